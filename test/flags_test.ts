/**
 * The shared flag parser (src/cli/flags.ts): every kind converts, every bad command line is a
 * UsageError (exit status 2) whose message names the flag and what was expected.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import {
  checkOutFolder,
  type FlagTable,
  parseFlags,
  type ParseFlagsOptions,
  rejectRepeatedFlags,
  shownValue,
  UsageError,
  usageLines,
} from "../src/cli/flags.ts";
import { ConfigError } from "../src/train/config.ts";
import { UserError } from "../src/errors.ts";

const TABLE: FlagTable = {
  "name": { key: "name", kind: "string", help: "a name" },
  "count": { key: "count", kind: "int", help: "a count" },
  "cap": { key: "cap", kind: "int", nullable: true, help: "a cap (none: no cap)" },
  "rate": { key: "rate", kind: "number", help: "a rate" },
  "decay": { key: "decay", kind: "number", nullable: true, help: "a decay (none: never)" },
  "epochs": { key: "epochs", kind: "list", help: "epochs" },
  "fast": { key: "fast", kind: "bool", help: "go fast" },
  "mode": { key: "mode", kind: "enum", values: ["a", "b"], help: "a mode", defaultText: "a" },
  "help": { key: "help", kind: "bool", help: "show this help" },
};
const VALID = "valid flags: --name, --count, --cap, --rate, --decay, --epochs, --fast, --mode, " +
  "--help";

/** Asserts that `args` are refused with exactly `message` (before the hint) naming `flag`. */
function refused(
  args: string[],
  message: string,
  flag?: string,
  options: ParseFlagsOptions = {},
): UsageError {
  try {
    parseFlags(args, TABLE, options);
  } catch (e) {
    assert.ok(e instanceof UsageError, String(e));
    assert.ok(e instanceof ConfigError && e instanceof UserError);
    assert.equal(e.exitCode, 2);
    assert.equal(e.name, "UsageError");
    const hint = options.hint ?? "run with --help to see every flag and its default";
    assert.equal(e.message, `${message}\n  to fix: ${hint}`);
    assert.equal(e.flag, flag);
    return e;
  }
  assert.fail(`${args.join(" ")} was accepted`);
}

Deno.test("flags: every kind converts; flags not given are absent", () => {
  const p = parseFlags([
    "--name",
    " x ",
    "--count=3",
    "--cap",
    "7",
    "--rate",
    "1e-2",
    "--decay",
    ".5",
    "--epochs",
    "160, 180",
    "--fast",
    "--mode",
    "b",
  ], TABLE);
  assert.deepEqual(p, {
    help: false,
    values: {
      name: "x",
      count: 3,
      cap: 7,
      rate: 0.01,
      decay: 0.5,
      epochs: [160, 180],
      fast: true,
      mode: "b",
    },
  });
  assert.deepEqual(parseFlags([], TABLE), { help: false, values: {} });
  assert.deepEqual(parseFlags(["--help"], TABLE), { help: true, values: {} });
  assert.deepEqual(parseFlags(["--no-help"], TABLE), { help: false, values: {} });
  assert.deepEqual(parseFlags(["--no-fast"], TABLE).values, { fast: false });
  assert.deepEqual(parseFlags(["--rate", "+2", "--count", "0"], TABLE).values, {
    rate: 2,
    count: 0,
  });
  // an empty list and "none" are the empty list (no decays), not an error
  assert.deepEqual(parseFlags(["--epochs", "none"], TABLE).values, { epochs: [] });
  assert.deepEqual(parseFlags(["--epochs="], TABLE).values, { epochs: [] });
});

Deno.test("flags: nullable flags read their null words; others take them literally or refuse", () => {
  assert.deepEqual(parseFlags(["--cap", "none", "--decay", "none"], TABLE).values, {
    cap: null,
    decay: null,
  });
  refused(["--cap", "all"], 'invalid --cap "all": expected an integer or none', "--cap");
  const all = { nullWords: ["none", "all"] };
  assert.deepEqual(parseFlags(["--cap", "all"], TABLE, all).values, { cap: null });
  refused(["--count", "none"], 'invalid --count "none": expected an integer', "--count");
  refused(["--rate", "none"], 'invalid --rate "none": expected a number', "--rate");
  refused(["--decay", "x"], 'invalid --decay "x": expected a number or none', "--decay");
  assert.deepEqual(parseFlags(["--name", "none"], TABLE).values, { name: "none" });
});

Deno.test("flags: negative numbers reach validation as values, not as flags", () => {
  assert.deepEqual(parseFlags(["--rate", "-1"], TABLE).values, { rate: -1 });
  assert.deepEqual(parseFlags(["--rate", "-.5", "--fast"], TABLE).values, {
    rate: -0.5,
    fast: true,
  });
  assert.deepEqual(parseFlags(["--rate=-2e-3"], TABLE).values, { rate: -0.002 });
  assert.deepEqual(parseFlags(["--decay", "-1"], TABLE).values, { decay: -1 });
  refused(["--count", "-3"], 'invalid --count "-3": expected an integer', "--count");
  // a switch never swallows the next argument
  refused(["--fast", "-1"], `unknown flag -1; ${VALID}`);
  // only numbers are joined: a dash word is taken for a flag, so the value is missing
  refused(["--name", "-x"], "--name needs a value", "--name");
  assert.deepEqual(parseFlags(["--name=-x"], TABLE).values, { name: "-x" });
});

Deno.test("flags: bad values name the flag and what was expected", () => {
  refused(["--count", "1.5"], 'invalid --count "1.5": expected an integer', "--count");
  refused(["--count", "x"], 'invalid --count "x": expected an integer', "--count");
  refused(["--rate", "abc"], 'invalid --rate "abc": expected a number', "--rate");
  refused(["--rate", "0x10"], 'invalid --rate "0x10": expected a number', "--rate");
  refused(["--rate", "1e999"], 'invalid --rate "1e999": expected a number', "--rate");
  refused(["--rate", "Infinity"], 'invalid --rate "Infinity": expected a number', "--rate");
  refused(
    ["--epochs", "160,x"],
    'invalid --epochs "160,x": expected comma-separated integers, e.g. 160,180',
    "--epochs",
  );
  refused(["--mode", "c"], 'invalid --mode "c": expected one of a, b', "--mode");
  refused(["--name", ""], 'invalid --name "": expected a non-empty value', "--name");
  refused(["--name="], 'invalid --name "": expected a non-empty value', "--name");
  // past 2^53 the number parsed is not the integer typed (it reached the trainer as 1e20)
  const tooLarge = "too large (an integer flag holds at most 9007199254740991)";
  refused(
    ["--count", "99999999999999999999"],
    `invalid --count 99999999999999999999: ${tooLarge}`,
    "--count",
  );
  refused(["--cap", "9007199254740992"], `invalid --cap 9007199254740992: ${tooLarge}`, "--cap");
  refused(
    ["--epochs", "160,99999999999999999999"],
    `invalid --epochs 99999999999999999999: ${tooLarge}`,
    "--epochs",
  );
  assert.equal(parseFlags(["--count", "9007199254740991"], TABLE).values.count, 2 ** 53 - 1);
});

Deno.test("flags: unknown flags, stray arguments, missing and surplus values", () => {
  refused(["--foo", "1"], `unknown flag --foo; ${VALID}`);
  refused(["--no-rate"], `unknown flag --no-rate; ${VALID}`);
  refused(["-h"], `unknown flag -h; ${VALID}`);
  refused(
    ["stray"],
    `unexpected argument "stray": every setting is a flag (--name value); ${VALID}`,
  );
  refused(["--rate"], "--rate needs a value: a number", "--rate");
  refused(["--cap"], "--cap needs a value: an integer or none", "--cap");
  refused(["--mode", "--fast"], "--mode needs a value: one of a, b", "--mode");
  refused(
    ["--epochs"],
    "--epochs needs a value: comma-separated integers, e.g. 160,180",
    "--epochs",
  );
  refused(["--name"], "--name needs a value", "--name");
  refused(["--fast=yes"], "--fast takes no value (use --fast or --no-fast)", "--fast");
  refused(["--no-fast=1"], "--fast takes no value (use --fast or --no-fast)", "--fast");
  refused(["--help=1"], "--help takes no value (use --help or --no-help)", "--help");
});

Deno.test("flags: a flag given twice is refused, switches and their --no- form included", () => {
  refused(
    ["--count", "1", "--count=2"],
    "--count is given twice; give each flag once",
    "--count",
  );
  refused(
    ["--fast", "--no-fast"],
    "--fast is given more than once (--fast and --no-fast); give each flag once",
    "--fast",
  );
  refused(
    ["--rate", "-1", "--rate", "2"],
    "--rate is given twice; give each flag once",
    "--rate",
  );
  assert.throws(
    () =>
      rejectRepeatedFlags([
        { kind: "option", name: "no-download", rawName: "--no-download" },
        { kind: "positional" },
        { kind: "option", name: "download", rawName: "--download" },
      ]),
    (e) => {
      assert.ok(e instanceof UsageError);
      assert.equal(e.flag, "--download");
      assert.match(
        e.message,
        /^--download is given more than once \(--no-download and --download\)/,
      );
      return true;
    },
  );
  rejectRepeatedFlags([{ kind: "option", name: "a", rawName: "--a" }]);
  rejectRepeatedFlags(undefined);
});

Deno.test("flags: a caller's hint and usage line go with every message", () => {
  const options = { hint: "run deno task x --help", usage: "usage: x [--fast]" };
  refused(["--foo"], `unknown flag --foo; ${VALID}\nusage: x [--fast]`, undefined, options);
  refused(
    ["--count", "x"],
    'invalid --count "x": expected an integer\nusage: x [--fast]',
    "--count",
    options,
  );
  refused(
    ["--fast", "--fast"],
    "--fast is given twice; give each flag once\nusage: x [--fast]",
    "--fast",
    options,
  );
});

Deno.test("flags: usage lines show the argument, the help and the default", () => {
  const lines = usageLines(TABLE, (name, f) => (f.key === "count" ? `${name}!` : undefined));
  assert.deepEqual(lines.slice(0, 4), [
    "  --name <value>",
    "      a name",
    "  --count <value>",
    "      a count (default: count!)",
  ]);
  assert.deepEqual(lines.slice(12, 16), [
    "  --fast",
    "      go fast",
    "  --mode <a|b>",
    "      a mode (default: a)",
  ]);
  assert.equal(lines.length, 2 * Object.keys(TABLE).length);
  assert.deepEqual([null, [1, 2], true, false, 0.5, "x"].map(shownValue), [
    "none",
    "1,2",
    "on",
    "off",
    "0.5",
    "x",
  ]);
});

Deno.test("flags: an output folder behind a dangling symbolic link is refused, naming the link", async () => {
  // before: no check caught it and the run's mkdir failed with AlreadyExists (a stack trace)
  const dir = await Deno.makeTempDir({ prefix: "tg-flags-link-" });
  try {
    const link = join(dir, "out");
    // Deno.symlink needs unscoped --allow-write; the tests have --allow-run
    const ln = await new Deno.Command("ln", { args: ["-s", join(dir, "gone"), link] }).output();
    assert.equal(ln.code, 0, new TextDecoder().decode(ln.stderr));
    const check = { flag: "--out", scopeHint: "unused: /tmp is writable" };
    for (const out of [link, join(link, "sub")]) {
      const err = await checkOutFolder(out, check).then(() => assert.fail(out), (e) => e);
      assert.ok(err instanceof ConfigError, String(err));
      assert.equal(err.flag, "--out");
      assert.equal(
        err.message,
        `--out ${out}: ${link} is a symbolic link to ${join(dir, "gone")}, which does not ` +
          "exist, so the folder cannot be created\n  to fix: create the link's target, remove " +
          "the link, or choose another --out",
      );
    }
    // a link to a folder is that folder
    await Deno.mkdir(join(dir, "gone"));
    assert.equal(await checkOutFolder(link, check), true);
    assert.equal(await checkOutFolder(join(link, "sub"), check), false);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
