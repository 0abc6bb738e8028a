/**
 * Verified downloads: fetch into a temporary file in the destination directory, check the
 * byte count and a pinned SHA-256 digest, and only then rename into place. Any failure removes
 * the temporary file, so an interrupted or corrupt download never leaves anything behind.
 */
import { writeFileAtomic } from "../checkpoint/atomic.ts";
import { basename, dirname, join } from "node:path";
import { DataError, describeError } from "./errors.ts";

/** Options for {@linkcode downloadVerified}. */
export interface DownloadOptions {
  /** The fetch implementation (tests may inject one); default `globalThis.fetch`. */
  fetch?: typeof fetch;
  /** Called as bytes arrive. */
  onProgress?: (received: number, total: number | null) => void;
  /** Aborts the transfer; passed to `fetch`. */
  signal?: AbortSignal;
}

/** Lower-case hex SHA-256 of `bytes`. */
export async function sha256Hex(bytes: Uint8Array): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", bytes as Uint8Array<ArrayBuffer>);
  return Array.from(new Uint8Array(digest), (b) => b.toString(16).padStart(2, "0")).join("");
}

async function writeAll(file: Deno.FsFile, chunk: Uint8Array): Promise<void> {
  let off = 0;
  while (off < chunk.length) off += await file.write(chunk.subarray(off));
}

/**
 * Downloads `url` to `dest`, verifying the SHA-256 `sha256` (hex). The bytes go to a temporary
 * file next to `dest` that is renamed onto `dest` only once complete and verified.
 * Throws {@linkcode DataError} naming the URL on an HTTP error, a network error, a truncated
 * transfer (fewer bytes than Content-Length, or a connection dropped mid-body) or a digest
 * mismatch; `sha256 === null` refuses to download at all.
 */
export async function downloadVerified(
  url: string,
  dest: string,
  sha256: string | null,
  options: DownloadOptions = {},
): Promise<void> {
  if (!sha256) {
    throw new DataError(
      `${url}: refusing to download: no verified SHA-256 digest is pinned for ` +
        `${basename(dest)}, so the download could not be checked`,
      { file: url, hint: `download it yourself and place it at ${dest}` },
    );
  }
  const expected = sha256.toLowerCase();
  const dir = dirname(dest);
  try {
    await Deno.mkdir(dir, { recursive: true });
  } catch (e) {
    throw new DataError(`${dir}: cannot create the data directory (${describeError(e)})`, {
      file: dir,
      cause: e,
      hint: "point --data-dir (or $TAILGRAD_DATA) at a folder this process may write",
    });
  }
  const tmp = join(dir, `.${basename(dest)}.${crypto.randomUUID().slice(0, 8)}.part`);
  const doFetch = options.fetch ?? globalThis.fetch;
  const retry = "run again to retry the download (deno needs --allow-net for the host), or " +
    `download ${url} yourself and place it at ${dest}`;
  let done = false;
  try {
    let res: Response;
    try {
      res = await doFetch(url, {
        headers: { "accept-encoding": "identity" },
        signal: options.signal,
      });
    } catch (e) {
      throw new DataError(`${url}: download failed: ${describeError(e)}`, {
        file: url,
        cause: e,
        hint: retry,
      });
    }
    if (!res.ok || !res.body) {
      await res.body?.cancel();
      throw new DataError(`${url}: download failed: HTTP ${res.status} ${res.statusText}`, {
        file: url,
        hint: retry,
      });
    }
    const lengthHeader = res.headers.get("content-length");
    const total = lengthHeader !== null && /^\d+$/.test(lengthHeader) ? Number(lengthHeader) : null;
    let received = 0;
    const file = await Deno.open(tmp, { write: true, createNew: true });
    try {
      for await (const chunk of res.body) {
        await writeAll(file, chunk);
        received += chunk.length;
        options.onProgress?.(received, total);
      }
    } catch (e) {
      throw new DataError(
        `${url}: transfer interrupted after ${received}` +
          `${total !== null ? ` of ${total}` : ""} bytes (${describeError(e)}); ` +
          `the partial download was discarded`,
        { file: url, cause: e, hint: retry },
      );
    } finally {
      file.close();
    }
    if (total !== null && received !== total) {
      throw new DataError(
        `${url}: truncated transfer: received ${received} of ${total} bytes; ` +
          `the partial download was discarded`,
        { file: url, hint: retry },
      );
    }
    const actual = await sha256Hex(await Deno.readFile(tmp));
    if (actual !== expected) {
      throw new DataError(
        `${url}: SHA-256 mismatch: expected ${expected}, got ${actual} (${received} bytes); ` +
          `the download was discarded`,
        {
          file: url,
          hint: "run again to retry; if it fails again the server's file is not the one " +
            `pinned: get the dataset from its official source and place it at ${dest}`,
        },
      );
    }
    await Deno.rename(tmp, dest);
    done = true;
  } finally {
    if (!done) await Deno.remove(tmp).catch(() => {});
  }
}

/** Replaces `dest` atomically (src/checkpoint/atomic.ts); failures become a DataError naming it. */
export async function writeDataFile(dest: string, data: Uint8Array): Promise<void> {
  try {
    await writeFileAtomic(dest, data);
  } catch (e) {
    throw new DataError(`${dest}: cannot write file (${describeError(e)})`, {
      file: dest,
      cause: e,
      hint: "point --data-dir (or $TAILGRAD_DATA) at a folder this process may write",
    });
  }
}
