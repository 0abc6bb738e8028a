/**
 * The examples' command line (not an example itself): `--size full|small` and an example's own
 * flags, parsed by the trainer's flag parser (src/cli/flags.ts), so `--size=small` works and a
 * typo is an error instead of a silent full-size run; a mistake prints one `error:` message with
 * what to do and exits 2 (src/errors.ts), `--help` lists the flags.
 */
import { type FlagSpec, type FlagTable, parseFlags, usageLines } from "../src/cli/flags.ts";
import { reportError } from "../src/errors.ts";

/** `--size full|small`: the example's full run, or the reduced one the test suite runs. */
export const SIZE_FLAG: FlagSpec<"size"> = {
  key: "size",
  kind: "enum",
  values: ["full", "small"],
  help: "full: the run the example's numbers come from; small: the test suite's reduced run",
  defaultText: "full",
};

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
