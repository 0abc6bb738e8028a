/**
 * The one error type for mistakes a user can fix: a bad flag, a missing or corrupt file, a
 * checkpoint from another run. Its message names the file or flag, says what was expected and
 * what to do; the scripts print it without a stack trace and exit non-zero
 * ({@linkcode reportError}). Anything else that is thrown is a bug and keeps its stack.
 */

/**
 * What a {@linkcode UserError} is about and how the process should end.
 *
 * @category Core
 */
export interface UserErrorOptions {
  /** The file, folder or URL concerned. */
  file?: string;
  /** The command-line flag concerned, e.g. "--out". */
  flag?: string;
  /** What to do about it; appended to the message as "to fix: ...". */
  hint?: string;
  /** Exit status of a script that stops on it: 2 for a bad command line, 1 otherwise. */
  exitCode?: number;
  /** The underlying error. */
  cause?: unknown;
}

/**
 * A mistake in the user's input, with a message that says what to do; scripts print it without
 * a stack trace and exit with `exitCode` ({@linkcode reportError}).
 *
 * The message is whole on purpose: the problem, then `\n  to fix: <hint>`, so that whatever
 * shows only the message (an uncaught error, `String(e)`, a log line) shows what to do. The two
 * parts are also apart, for a program that words its own: `problem` and `hint`. Print the
 * message, or the two parts, not the message and the hint (the hint would appear twice).
 *
 * @category Core
 */
export class UserError extends Error {
  /** "UserError", or the subclass's name. */
  override name = "UserError";
  /** The file, folder or URL the error is about. */
  readonly file?: string;
  /** The flag the error is about. */
  readonly flag?: string;
  /** What is wrong: the message without its "to fix:" line. */
  readonly problem: string;
  /** What to do (the message's "to fix:" line, without its label), when given. */
  readonly hint?: string;
  /** Exit status for scripts: 2 for a bad command line, 1 otherwise. */
  readonly exitCode: number;

  /**
   * `message` says what is wrong and what was expected (kept as `problem`); `options.hint`,
   * what to do, is appended to it as "to fix: ..." (and kept as `hint`).
   */
  constructor(message: string, options: UserErrorOptions = {}) {
    super(
      options.hint ? `${message}\n  to fix: ${options.hint}` : message,
      options.cause === undefined ? undefined : { cause: options.cause },
    );
    this.problem = message;
    this.file = options.file;
    this.flag = options.flag;
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? 1;
  }
}

/**
 * The message of `e` without its "to fix:" line: what is wrong, for a caller that wraps it in
 * an error of its own with its own hint (one "to fix:" line per message).
 *
 * @category Core
 */
export function problemOf(e: unknown): string {
  if (e instanceof UserError) return e.problem;
  return e instanceof Error ? e.message : String(e);
}

/** Formats an unknown thrown value for inclusion in a message. */
export function describeError(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

/** True when `TAILGRAD_DEBUG` is set to a non-empty value other than "0" (and readable). */
export function debugEnabled(): boolean {
  try {
    const v = Deno.env.get("TAILGRAD_DEBUG");
    return v !== undefined && v !== "" && v !== "0";
  } catch {
    return false;
  }
}

/**
 * Prints a script's failure to stderr and returns its exit status: a {@linkcode UserError}
 * as `error: <message>` (with the stack only when `TAILGRAD_DEBUG=1`), anything else with its
 * stack (a bug to report).
 *
 * @category CLI
 */
export function reportError(e: unknown, prefix = "error"): number {
  if (e instanceof UserError) {
    console.error(`${prefix}: ${e.message}`);
    if (debugEnabled() && e.stack) console.error(e.stack);
    return e.exitCode;
  }
  console.error(e instanceof Error ? (e.stack ?? e.message) : e);
  return 1;
}

/**
 * Thrown for invalid settings (exit status 2); the CLI prints the message without a stack.
 *
 * @category CLI
 */
export class ConfigError extends UserError {
  /** "ConfigError", or the subclass's name. */
  override name = "ConfigError";

  /** An invalid setting; `options.flag` names the flag. */
  constructor(message: string, options: UserErrorOptions = {}) {
    super(message, { exitCode: 2, ...options });
  }
}
