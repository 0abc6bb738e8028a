/**
 * The examples' command line and errors (not an example itself), over `../mod.ts` alone:
 * `--size full|small`, `--data-dir DIR` and an example's own flags, parsed by the flag parser of
 * tailgrad's tasks (`parseFlags`), so `--size=small` works and a typo is an error instead of a
 * silent full-size run; `--help` lists the flags. A mistake, on the command line or in the data,
 * prints one `error:` message with what to do and exits non-zero (2 for the command line), as
 * `deno task train` does (`reportError`); a bug keeps its stack.
 */
import {
  type FlagSpec,
  type FlagTable,
  parseFlags,
  reportError,
  usageLines,
  UserError,
} from "../mod.ts";

/** `--size full|small`: the example's full run, or the reduced one the test suite runs. */
export const SIZE_FLAG: FlagSpec<"size"> = {
  key: "size",
  kind: "enum",
  values: ["full", "small"],
  help: "full: the run the example's numbers come from; small: the test suite's reduced run",
  defaultText: "full",
};

/** `--data-dir DIR`: where Fashion-MNIST is, as for `deno task train` (never downloaded here). */
export const DATA_DIR_FLAG: FlagSpec<"dataDir"> = {
  key: "dataDir",
  kind: "string",
  help: "folder holding fashion-mnist/ (or its files); the example tasks may read only . and " +
    "/usr/share/datasets",
  defaultText: "$TAILGRAD_DATA, else ./data/fashion-mnist, else the system copy",
};

/**
 * Ends the example on any error it does not catch itself, as the CLI's `main` does: a
 * {@linkcode UserError} (a bad flag, missing or damaged data, no GPU, a permission deno did
 * not grant) as one `error:` line and its exit status, anything else with its stack (a bug).
 */
export function reportErrors(): void {
  const end = (e: Event, error: unknown) => {
    e.preventDefault();
    Deno.exit(reportError(asUserError(error)));
  };
  globalThis.addEventListener("unhandledrejection", (e) => end(e, e.reason));
  globalThis.addEventListener("error", (e) => end(e, e.error));
}

/**
 * Permission errors, which the user can fix, worded as such; anything else unchanged (a missing
 * GPU is a UserError already).
 */
function asUserError(e: unknown): unknown {
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return new UserError(e.message, {
      cause: e,
      hint: "run the example through its deno task, or give deno run the permission named",
    });
  }
  return e;
}

/**
 * The flags of `Deno.args` against `table` (plus --help, which prints `usage` and the flags and
 * exits 0); on a mistake prints the error and exits with its status.
 */
export function exampleFlags<K extends string>(
  usage: string,
  table: FlagTable<K>,
): Partial<Record<K, string>> {
  const withHelp: FlagTable<K | "help"> = {
    ...table,
    help: { key: "help", kind: "bool", help: "show this help" },
  };
  try {
    const { help, values } = parseFlags(Deno.args, withHelp);
    if (help) {
      console.log([usage, "", "flags:", ...usageLines(table)].join("\n"));
      Deno.exit(0);
    }
    return values as Partial<Record<K, string>>;
  } catch (e) {
    Deno.exit(reportError(e));
  }
}

/** The `--size` of `flags` (default full). */
export function sizeOf(flags: { size?: string }): "full" | "small" {
  return flags.size === "small" ? "small" : "full";
}
