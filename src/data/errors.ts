/**
 * The error type of the data layer: every reader, locator and downloader failure is a
 * {@linkcode DataError} (a {@linkcode UserError}) whose message names the file (or URL), says
 * what was expected and what was found, and whose hint says what to do. The helpers below give
 * the messages that several readers share one wording.
 */
import { describeError, reportError, UserError, type UserErrorOptions } from "../errors.ts";

// the project-wide user error type, exported with the data layer (and so from mod.ts)
export { describeError, reportError, UserError, type UserErrorOptions };

/** A data-layer failure; `file` is the path or URL concerned, when there is one. */
export class DataError extends UserError {
  /** Always "DataError". */
  override name = "DataError";

  /** A data error; `options.file` names the file or URL, `options.hint` what to do. */
  constructor(message: string, options: UserErrorOptions = {}) {
    super(message, options);
  }
}

/**
 * What to do about dataset files that are damaged, truncated or not the files their names say
 * (a reader cannot tell which): put verified copies in their place. `files` says which ("the
 * file", "both files"). Deleting is left to the user, who knows whether they are theirs.
 */
export function refetchHint(files: "the file" | "both files"): string {
  const copies = files === "the file"
    ? "a verified copy in its place"
    : "verified copies in their place";
  return `delete ${files} and run again with --download (option allowDownload) to fetch ` +
    `${copies}, or point --data-dir at a good copy of the dataset`;
}

/** {@linkcode refetchHint} for one file: the hint of {@linkcode damagedFile}. */
export const DAMAGED_FILE_HINT = refetchHint("the file");

/**
 * A {@linkcode DataError} for a dataset file whose contents are wrong: the message is
 * `file: problem` (`problem` says what was expected and what was found), the hint
 * {@linkcode DAMAGED_FILE_HINT} unless `hint` gives another.
 */
export function damagedFile(file: string, problem: string, hint = DAMAGED_FILE_HINT): DataError {
  return new DataError(`${file}: ${problem}`, { file, hint });
}

/**
 * A {@linkcode DataError} for a file that cannot be read: missing (`NotFound`), a folder, or
 * not readable by this process. `what` names the kind of file ("list file", "image"); `where`
 * prefixes the message (a list's "file:line"), `hint` replaces the default for a missing file.
 */
export function unreadableFile(
  path: string,
  e: unknown,
  options: { what?: string; where?: string; hint?: string } = {},
): DataError {
  const what = options.what ?? "file";
  const at = options.where ? `${options.where}: ` : "";
  const missing = e instanceof Deno.errors.NotFound;
  const message = missing
    ? `${at}${what} ${path} does not exist`
    : `${at}cannot read ${what} ${path} (${describeError(e)})`;
  const hint = missing
    ? options.hint ?? "check the path"
    : e instanceof Deno.errors.PermissionDenied || e instanceof Deno.errors.NotCapable
    ? "let this process read it (the file's permissions, or deno's --allow-read)"
    : `check that ${path} is a file this process can read`;
  return new DataError(message, { file: path, cause: e, hint });
}

/**
 * A {@linkcode DataError} for image `path` of list entry `where` ("list.txt:17") that cannot
 * be read; `cause` is the error, or its text when it crossed from a worker.
 */
export function imageReadError(where: string, path: string, cause: unknown): DataError {
  return unreadableFile(path, cause, {
    what: "image",
    where,
    hint: "check --data-root (the list's paths are relative to it) and the list's entry, or " +
      "remove the entry from the list",
  });
}

/** A {@linkcode DataError} for image `path` of list entry `where` that does not decode. */
export function badJpegError(where: string, path: string, detail: string): DataError {
  return new DataError(`${where}: ${path} is not a readable JPEG (${detail})`, {
    file: path,
    hint: "re-encode the image as an 8-bit baseline or progressive JPEG, or remove its entry " +
      "from the list",
  });
}
