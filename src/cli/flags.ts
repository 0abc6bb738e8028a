/**
 * Command-line flags shared by every entry point (`deno task train`, the large presets,
 * reproduce, export-meta-step, bench): a table says how each flag parses; one parser turns
 * the arguments into values or a {@linkcode UsageError} that names the flag, says what was
 * expected and lists the valid flags; {@linkcode usageLines} writes the --help entries.
 */
import { dirname } from "node:path";
import { parseArgs } from "node:util";
import { ConfigError } from "../errors.ts";
import type { UserErrorOptions } from "../errors.ts";

/** A bad command line (exit status 2); the message lists what is valid. */
export class UsageError extends ConfigError {
  /** Always "UsageError". */
  override name = "UsageError";

  /** A bad command line; the hint points at --help. */
  constructor(message: string, options: UserErrorOptions = {}) {
    super(message, { hint: "run with --help to see every flag and its default", ...options });
  }
}

/** How a flag's value parses: text, integer >= 0, number, integer list, switch or choice. */
export type FlagKind = "string" | "int" | "number" | "list" | "bool" | "enum";

/** How one flag parses and what it sets; `K` is the type of the keys the flags set. */
export interface FlagSpec<K extends string = string> {
  /** The field the flag sets ("help" for the help switch: {@linkcode ParsedFlags.help}). */
  key: K;
  /** How the value parses. */
  kind: FlagKind;
  /** One-line description shown by {@linkcode usageLines}. */
  help: string;
  /** Allowed values of an "enum" flag. */
  values?: readonly string[];
  /** Accepts "none" (and the other {@linkcode ParseFlagsOptions.nullWords}) as null. */
  nullable?: boolean;
  /** The default as --help states it, where the caller cannot work it out from a value. */
  defaultText?: string;
  /** What a valid value looks like, for errors, where the kind alone does not say it all. */
  expected?: string;
}

/** Every flag of a command: name without the dashes -> how it parses. */
export type FlagTable<K extends string = string> = Readonly<Record<string, FlagSpec<K>>>;

/** A converted value: string, number, switch, integer list, or null for a nullable flag. */
export type FlagValue = string | number | boolean | number[] | null;

/** How {@linkcode parseFlags} words its errors and reads nullable flags. */
export interface ParseFlagsOptions {
  /** Values a nullable flag reads as null (default ["none"]; the first is named in errors). */
  nullWords?: readonly string[];
  /** What to do about a bad command line (default: run with --help ...). */
  hint?: string;
  /** Text appended to every error on its own line, e.g. a one-line usage. */
  usage?: string;
}

/** What {@linkcode parseFlags} returns. */
export interface ParsedFlags<K extends string> {
  /** True when the flag whose key is "help" was given. */
  help: boolean;
  /** The converted value of every flag given, by its key; flags not given are absent. */
  values: Partial<Record<Exclude<K, "help">, FlagValue>>;
}

/** A value as the command line spells it (null "none", lists comma-separated, on/off). */
export function shownValue(v: unknown): string {
  if (v === null) return "none";
  if (Array.isArray(v)) return v.join(",");
  if (typeof v === "boolean") return v ? "on" : "off";
  return String(v);
}

/**
 * The --help entries of `table`: `  --name <value>` then the help, indented, with
 * ` (default: ...)` from the flag's `defaultText` or else `defaultOf` (nothing when undefined).
 */
export function usageLines<K extends string>(
  table: FlagTable<K>,
  defaultOf?: (name: string, flag: FlagSpec<K>) => string | undefined,
): string[] {
  const lines: string[] = [];
  for (const [name, f] of Object.entries(table)) {
    const arg = f.kind === "bool"
      ? ""
      : f.kind === "enum"
      ? ` <${f.values!.join("|")}>`
      : " <value>";
    const dflt = f.defaultText ?? defaultOf?.(name, f);
    lines.push(
      `  --${name}${arg}`,
      `      ${f.help}${dflt === undefined ? "" : ` (default: ${dflt})`}`,
    );
  }
  return lines;
}

/**
 * Parses `args` against `table` (see the module doc): `--name value` or `--name=value`, a
 * negative number as the next argument ("--lr -1"), `--x`/`--no-x` for switches; each flag
 * at most once. Throws {@linkcode UsageError} for anything else.
 */
export function parseFlags<K extends string>(
  args: readonly string[],
  table: FlagTable<K>,
  options: ParseFlagsOptions = {},
): ParsedFlags<K> {
  const fail: Fail = failWith(options);
  const parseOptions: Record<string, { type: "string" | "boolean" }> = {};
  for (const [name, f] of Object.entries(table)) {
    parseOptions[name] = { type: f.kind === "bool" ? "boolean" : "string" };
  }
  let parsed: ReturnType<typeof parseArgs>;
  try {
    parsed = parseArgs({
      args: joinNegativeValues(args, table),
      options: parseOptions,
      strict: true,
      allowPositionals: false,
      allowNegative: true,
      tokens: true,
    });
  } catch (e) {
    const [message, flag] = parseArgsMessage(
      e instanceof Error ? e.message : String(e),
      table,
      options,
    );
    return fail(message, flag);
  }
  const repeated = repeatedFlag(parsed.tokens);
  if (repeated) fail(repeated.message, repeated.flag);
  const values: Record<string, FlagValue> = {};
  let help = false;
  for (const [name, raw] of Object.entries(parsed.values)) {
    const f = table[name];
    if (!f) fail(`unknown flag --${name}; valid flags: ${validFlags(table)}`);
    if (Array.isArray(raw)) fail(`--${name} given more than once`, `--${name}`);
    if (f.kind !== "bool" && typeof raw === "boolean") {
      fail(`--${name} needs a value${expected(f, options)}`, `--${name}`);
    }
    if (f.kind === "bool" && typeof raw !== "boolean") {
      fail(`--${name} takes no value (use --${name} or --no-${name})`, `--${name}`);
    }
    if (f.key === "help") help = raw === true;
    else values[f.key] = convert(name, f, raw as string | boolean, options);
  }
  return { help, values: values as ParsedFlags<K>["values"] };
}

/**
 * Throws a {@linkcode UsageError} when a flag occurs twice in `parseArgs` tokens (`--x` and
 * `--no-x` count as the same flag): node's parseArgs would silently keep the last value.
 */
export function rejectRepeatedFlags(
  tokens: { kind: string; name?: string; rawName?: string }[] | undefined,
): void {
  const repeated = repeatedFlag(tokens);
  if (repeated) throw new UsageError(repeated.message, { flag: repeated.flag });
}

function repeatedFlag(
  tokens: { kind: string; name?: string; rawName?: string }[] | undefined,
): { message: string; flag: string } | undefined {
  const seen = new Map<string, string>();
  for (const t of tokens ?? []) {
    if (t.kind !== "option" || !t.name) continue;
    const name = t.name.replace(/^no-/, "");
    const before = seen.get(name);
    if (before !== undefined) {
      const raw = t.rawName ?? `--${name}`;
      const how = before === raw ? "twice" : `more than once (${before} and ${raw})`;
      return { message: `--${name} is given ${how}; give each flag once`, flag: `--${name}` };
    }
    seen.set(name, t.rawName ?? `--${name}`);
  }
  return undefined;
}

/** Throws the {@linkcode UsageError} of a bad command line; `flag` names the flag concerned. */
type Fail = (message: string, flag?: string) => never;

function failWith(options: ParseFlagsOptions): Fail {
  return (message, flag) => {
    const text = options.usage === undefined ? message : `${message}\n${options.usage}`;
    throw new UsageError(text, {
      ...(options.hint === undefined ? {} : { hint: options.hint }),
      ...(flag === undefined ? {} : { flag }),
    });
  };
}

const validFlags = (table: FlagTable) => Object.keys(table).map((f) => `--${f}`).join(", ");

/** "--lr -1": a value that looks like a flag; join numeric ones so they reach validation. */
function joinNegativeValues(args: readonly string[], table: FlagTable): string[] {
  const joined: string[] = [];
  for (let i = 0; i < args.length; i++) {
    const f = args[i].startsWith("--") ? table[args[i].slice(2)] : undefined;
    const next = args[i + 1];
    if (f && f.kind !== "bool" && next !== undefined && /^-[0-9.]/.test(next)) {
      joined.push(`${args[i]}=${next}`);
      i++;
    } else {
      joined.push(args[i]);
    }
  }
  return joined;
}

/** parseArgs' error as a message naming the flag and what is valid, and the flag. */
function parseArgsMessage(
  msg: string,
  table: FlagTable,
  options: ParseFlagsOptions,
): [string, string?] {
  const unknown = /Unknown option '([^']+)'/.exec(msg);
  if (unknown) return [`unknown flag ${unknown[1]}; valid flags: ${validFlags(table)}`];
  const positional = /Unexpected argument '([^']+)'/.exec(msg);
  if (positional) {
    return [
      `unexpected argument ${JSON.stringify(positional[1])}: every setting is a flag ` +
      `(--name value); valid flags: ${validFlags(table)}`,
    ];
  }
  const missing = /Option '(--[a-z-]+)[^']*' argument (missing|is ambiguous)/.exec(msg);
  if (missing) {
    const f = table[missing[1].slice(2)];
    return [`${missing[1]} needs a value${expected(f, options)}`, missing[1]];
  }
  const noArg = /Option '(--[a-z-]+)' does not take an argument/.exec(msg);
  if (noArg) {
    const name = noArg[1].slice(2);
    return [`${noArg[1]} takes no value (use ${noArg[1]} or --no-${name})`, noArg[1]];
  }
  return [`${msg}; valid flags: ${validFlags(table)}`];
}

/** ": what a value of `f` looks like", for error messages ("" when nothing to say). */
function expected(f: FlagSpec | undefined, options: ParseFlagsOptions): string {
  // "--name needs a value: a non-empty value" says nothing more than the first half
  const what = f && (f.kind !== "string" || f.expected) && valueText(f, options);
  return what ? `: ${what}` : "";
}

/** What a value of `f` looks like: "an integer", "one of a, b", ... */
function valueText(f: FlagSpec, options: ParseFlagsOptions): string {
  if (f.expected !== undefined) return f.expected;
  const orNull = f.nullable ? ` or ${(options.nullWords ?? ["none"])[0]}` : "";
  switch (f.kind) {
    case "enum":
      return `one of ${f.values!.join(", ")}`;
    case "int":
      return `an integer${orNull}`;
    case "number":
      return `a number${orNull}`;
    case "list":
      return "comma-separated integers, e.g. 160,180";
    case "string":
      return "a non-empty value";
    default:
      return "";
  }
}

function convert(
  name: string,
  f: FlagSpec,
  raw: string | boolean,
  options: ParseFlagsOptions,
): FlagValue {
  if (f.kind === "bool") return raw;
  const v = String(raw).trim();
  const bad = (): never =>
    failWith(options)(
      `invalid --${name} ${JSON.stringify(raw)}: expected ${valueText(f, options)}`,
      `--${name}`,
    );
  if (f.nullable && (options.nullWords ?? ["none"]).includes(v)) return null;
  switch (f.kind) {
    case "string":
      return v === "" ? bad() : v;
    case "enum":
      return f.values!.includes(v) ? v : bad();
    case "int":
      return /^[0-9]+$/.test(v) ? safeInt(name, v, options) : bad();
    case "number": {
      if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(v)) bad();
      const n = Number(v);
      return Number.isFinite(n) ? n : bad();
    }
    case "list": {
      if (v === "" || v === "none") return [];
      const parts = v.split(",").map((p) => p.trim());
      if (!parts.every((p) => /^[0-9]+$/.test(p))) bad();
      return parts.map((p) => safeInt(name, p, options));
    }
  }
}

/**
 * The integer `digits` spell, refused past 2^53 - 1, where a number no longer holds it exactly
 * (--epochs 99999999999999999999 would reach the trainer as 1e20).
 */
function safeInt(name: string, digits: string, options: ParseFlagsOptions): number {
  const n = Number(digits);
  if (Number.isSafeInteger(n)) return n;
  return failWith(options)(
    `invalid --${name} ${digits}: too large (an integer flag holds at most ` +
      `${Number.MAX_SAFE_INTEGER})`,
    `--${name}`,
  );
}

/** What {@linkcode checkOutFolder} checks: the flag, what the folder holds, who may write. */
export interface OutFolderCheck {
  /** The flag that names the folder, e.g. "--out". */
  flag: string;
  /** After "expected a folder", e.g. "for the results" (default nothing). */
  purpose?: string;
  /** The hint when the process may not write there: the task's write scope. */
  scopeHint: string;
  /** The error class (default {@linkcode ConfigError}; a CLI's own flags, UsageError). */
  error?: typeof ConfigError;
}

/**
 * Refuses an output folder before any work, naming the flag: one this process may not write,
 * a file, or a path that runs through a file (the folder could not be created). Returns
 * whether the folder exists. Writes nothing.
 */
export async function checkOutFolder(out: string, o: OutFolderCheck): Promise<boolean> {
  const Err = o.error ?? ConfigError;
  const fail = (message: string, hint: string): never => {
    throw new Err(message, { flag: o.flag, file: out, hint });
  };
  const perm = await Deno.permissions.query({ name: "write", path: out });
  if (perm.state !== "granted") {
    fail(`${o.flag} ${out}: this process may not write there`, o.scopeHint);
  }
  for (let p = out;; p = dirname(p)) {
    const kind = await pathKind(p);
    if (kind === "none" && await isLink(p)) {
      // mkdir would fail on it with AlreadyExists, after the data was loaded
      fail(
        `${o.flag} ${out}: ${p} is a symbolic link to ${await Deno.readLink(p)}, which does ` +
          "not exist, so the folder cannot be created",
        `create the link's target, remove the link, or choose another ${o.flag}`,
      );
    }
    if (kind === "dir") return p === out;
    if (kind === "file") {
      fail(
        p === out
          ? `${o.flag} ${out} is a file; expected a folder${o.purpose ? ` ${o.purpose}` : ""}`
          : `${o.flag} ${out}: ${p} is a file, so the folder cannot be created`,
        `choose another ${o.flag}`,
      );
    }
    if (dirname(p) === p) return false;
  }
}

/** Whether `path` itself is a symbolic link (its target may be absent). */
async function isLink(path: string): Promise<boolean> {
  try {
    return (await Deno.lstat(path)).isSymlink;
  } catch {
    return false;
  }
}

/** The kind of `path`: folder, file, or absent. */
export async function pathKind(path: string): Promise<"dir" | "file" | "none"> {
  try {
    return (await Deno.stat(path)).isDirectory ? "dir" : "file";
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return "none";
    throw e;
  }
}
