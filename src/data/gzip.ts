/**
 * Transparent gzip handling: data is gzip iff it starts with the magic bytes 0x1f 0x8b.
 */
import { DataError, describeError } from "./errors.ts";

/** True when `bytes` starts with the gzip magic number 0x1f 0x8b. */
export function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/**
 * Decompresses gzip data with the web-standard `DecompressionStream("gzip")`.
 * Corrupt or truncated input throws a {@linkcode DataError} naming `file`.
 */
export async function gunzip(bytes: Uint8Array, file: string): Promise<Uint8Array> {
  try {
    const stream = new Blob([bytes as Uint8Array<ArrayBuffer>]).stream()
      .pipeThrough(new DecompressionStream("gzip"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  } catch (e) {
    throw new DataError(`${file}: corrupt or truncated gzip data (${describeError(e)})`, {
      file,
      cause: e,
    });
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
    const what = e instanceof Deno.errors.NotFound ? "file not found" : "cannot read file";
    throw new DataError(`${path}: ${what} (${describeError(e)})`, { file: path, cause: e });
  }
}
