/**
 * The one error type of the data layer: every reader, locator and downloader failure is a
 * {@linkcode DataError} whose message names the file (or URL) and says what was wrong.
 */

/** A data-layer failure; `file` is the path or URL concerned, when there is one. */
export class DataError extends Error {
  /** Always "DataError". */
  override name = "DataError";
  /** The file or URL the error is about. */
  readonly file?: string;

  /** A data error; `options.file` names the file or URL, `options.cause` the underlying error. */
  constructor(message: string, options: { file?: string; cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.file = options.file;
  }
}

/** Formats an unknown thrown value for inclusion in a message. */
export function describeError(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}
