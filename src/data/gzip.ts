/**
 * Transparent gzip handling: data is gzip iff it starts with the magic bytes 0x1f 0x8b. A file
 * of several gzip members one after another (what `cat a.gz b.gz` makes, and `gzip -dc` reads)
 * decompresses to the members' contents joined, as gzip itself does.
 */
import { gunzipSync } from "node:zlib";
import { DAMAGED_FILE_HINT, DataError, describeError, unreadableFile } from "./errors.ts";

/** True when `bytes` starts with the gzip magic number 0x1f 0x8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Decompresses gzip data, every member of a multi-member file (node:zlib, built into Deno; the
 * web-standard `DecompressionStream` stops at the first member). Corrupt or truncated input
 * (including a CRC or length mismatch) throws a {@linkcode DataError} naming `file`.
 */
export function gunzip(bytes: Uint8Array, file: string): Promise<Uint8Array> {
  try {
    const out = gunzipSync(bytes);
    return Promise.resolve(new Uint8Array(out.buffer, out.byteOffset, out.byteLength));
  } catch (e) {
    return Promise.reject(
      new DataError(`${file}: corrupt or truncated gzip data (${describeError(e)})`, {
        file,
        cause: e,
        hint: `${DAMAGED_FILE_HINT} (gzip -t checks a copy)`,
      }),
    );
  }
}

/** Returns `bytes` decompressed if they are gzip (detected from the magic), else unchanged. */
export function maybeGunzip(bytes: Uint8Array, file: string): Promise<Uint8Array> {
  return isGzip(bytes) ? gunzip(bytes, file) : Promise.resolve(bytes);
}

/** Reads a file, raising a {@linkcode DataError} naming it when it cannot be read. */
export async function readFileBytes(path: string): Promise<Uint8Array> {
  try {
    return await Deno.readFile(path);
  } catch (e) {
    throw unreadableFile(path, e, {
      hint: "check the path, and that --data-dir (or $TAILGRAD_DATA) names the dataset's folder",
    });
  }
}
