/**
 * The error type of the data layer: every reader, locator and downloader failure is a
 * {@linkcode DataError} (a {@linkcode UserError}) whose message names the file (or URL) and
 * says what was wrong.
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
