/**
 * Crash-safe file replacement: write a temporary file in the destination's directory, flush it
 * to disk (fsync), rename it over the destination (atomic on POSIX file systems), then fsync
 * the directory so the rename itself is durable. A process killed at any point leaves either
 * the old file or the new one at `path`, never a torn one; at worst a stray temporary file,
 * which {@linkcode removeStaleTemps} cleans up and readers never look at.
 */
import { basename, dirname, join } from "node:path";
import { UserError } from "../errors.ts";

/** Suffix of temporary files: `<name>.<pid>.<random>.tmp`. */
const TMP_SUFFIX = ".tmp";

function tmpName(path: string): string {
  const rand = crypto.getRandomValues(new Uint32Array(1))[0].toString(16);
  return join(dirname(path), `.${basename(path)}.${Deno.pid}.${rand}${TMP_SUFFIX}`);
}

/** Whether `file` (a bare name) is a temporary file of {@linkcode writeFileAtomic} for `name`. */
export function isTempOf(file: string, name: string): boolean {
  return file.startsWith(`.${name}.`) && file.endsWith(TMP_SUFFIX);
}

/**
 * Replaces `path` with `data` atomically and durably (see the module doc). Throws a
 * {@linkcode UserError} naming the folder when `path`'s folder does not exist.
 */
export async function writeFileAtomic(path: string, data: Uint8Array | string): Promise<void> {
  const bytes = typeof data === "string" ? new TextEncoder().encode(data) : data;
  const tmp = tmpName(path);
  const file = await openNew(tmp, path);
  try {
    let at = 0;
    while (at < bytes.length) at += await file.write(bytes.subarray(at));
    await file.sync();
  } catch (e) {
    file.close();
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  file.close();
  try {
    await Deno.rename(tmp, path);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw e;
  }
  await syncDir(dirname(path));
}

/** Creates the temporary file `tmp` of `path`; a missing folder is named as such. */
async function openNew(tmp: string, path: string): Promise<Deno.FsFile> {
  try {
    return await Deno.open(tmp, { write: true, createNew: true });
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound)) throw e;
    const dir = dirname(path);
    throw new UserError(`cannot write ${path}: the folder ${dir} does not exist`, {
      file: path,
      hint: `create ${dir} first, or write to a folder that exists`,
      cause: e,
    });
  }
}

/** fsync of a directory, where the platform allows opening one (best effort). */
async function syncDir(dir: string): Promise<void> {
  try {
    const d = await Deno.open(dir, { read: true });
    try {
      await d.sync();
    } finally {
      d.close();
    }
  } catch {
    // Some platforms cannot open or fsync directories; the rename is still atomic.
  }
}

/** Removes leftover temporary files of `path` (from a writer killed mid-write). */
export async function removeStaleTemps(path: string): Promise<number> {
  let removed = 0;
  try {
    for await (const e of Deno.readDir(dirname(path))) {
      if (e.isFile && isTempOf(e.name, basename(path))) {
        await Deno.remove(join(dirname(path), e.name)).catch(() => {});
        removed++;
      }
    }
  } catch {
    // directory absent: nothing to clean
  }
  return removed;
}
