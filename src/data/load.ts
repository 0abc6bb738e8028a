/**
 * Finding, downloading and loading datasets.
 *
 * Where a dataset `<name>` is looked for (see {@linkcode candidateDirs}); the first place the
 * user named is the only one, so a wrong path never falls back to another copy:
 * 1. with `--data-dir` (`options.dataDir`): `<dataDir>/<name>` when it exists, else `<dataDir>`
 *    itself (the dataset's files directly in it);
 * 2. else with `$TAILGRAD_DATA`: `$TAILGRAD_DATA/<name>`, or `$TAILGRAD_DATA` itself when its
 *    folder is called `<name>` (a folder of another name holding the files is refused: IDX files
 *    of MNIST and Fashion-MNIST look alike). Reading it needs `--allow-env=TAILGRAD_DATA`:
 *    without that permission (and without `dataDir` or an `env` option) the search is a
 *    {@linkcode DataError}, never a silent fall back to the places below;
 * 3. else `./data/<name>` (relative to `options.cwd`), then system directories such as Debian's
 *    `/usr/share/datasets/fashion-mnist`.
 *
 * A directory holds an MNIST-style dataset when it has the four IDX files, each either gzip
 * (`*.gz`) or raw; a CIFAR dataset when it has the `.bin` files, directly or in the folder the
 * official archive unpacks into (`cifar-10-batches-bin/`, `cifar-100-binary/`). A folder with
 * only some of them, or with a folder where a file should be, is an error naming what is wrong.
 *
 * When the dataset is absent and `allowDownload` is set, it is downloaded from its official
 * location into `<dataDir>/<name>`, `$TAILGRAD_DATA/<name>` or `./data/<name>` (the first that
 * applies; a `dataDir` or `$TAILGRAD_DATA` folder that does not exist is an error instead,
 * downloads or not: a mistyped path is never filled with a fresh copy), each file verified
 * against its pinned SHA-256 before it is moved into place; an incomplete IDX folder gets its
 * missing files. A CIFAR archive is unpacked (only the `.bin` files that are not there yet,
 * each written atomically): one the program downloaded is then removed; one it found (placed by
 * the user) is first checked against the pinned digest and always kept. No file the program
 * did not create is ever overwritten or removed.
 */
import { basename, dirname, join, resolve } from "node:path";
import { damagedFile, DataError, describeError } from "./errors.ts";
import { problemOf } from "../errors.ts";
import type { DatasetName, ImageDataset } from "./dataset.ts";
import { loadIdxDataset, readIdxLabels } from "./idx.ts";
import { CIFAR_ARCHIVE_DIR, CIFAR_FILES, type CifarVariant, loadCifarDataset } from "./cifar.ts";
import { DATASET_SOURCES, type DatasetSource, IDX_FILES } from "./sources.ts";
import { downloadVerified, sha256Hex, writeDataFile } from "./download.ts";
import { gunzip, readFileBytes } from "./gzip.ts";
import { readTar } from "./tar.ts";
import { checkSplitsAgree } from "./validate.ts";

/** Options controlling where datasets are looked for. */
export interface FindOptions {
  /** The `--data-dir` flag. */
  dataDir?: string;
  /**
   * Environment lookup for `TAILGRAD_DATA`; default `Deno.env`, which needs
   * `--allow-env=TAILGRAD_DATA` (without it the search is an error, as the module doc says;
   * `dataDir` needs no environment). Pass `{}` to ignore the environment.
   */
  env?: Record<string, string | undefined>;
  /** Base for `./data/<name>`; default `Deno.cwd()`. */
  cwd?: string;
  /** Whether to look in system directories such as `/usr/share/datasets/...`; default true. */
  systemDirs?: boolean;
}

/** Options for {@linkcode ensureDataset} and {@linkcode loadDataset}. */
export interface LoadOptions extends FindOptions {
  /** Download from the official location when absent (needs network access). Default false. */
  allowDownload?: boolean;
  /** Overrides the source's base URL (tests serve files locally). */
  baseUrl?: string;
  /** Overrides pinned digests by file name (tests); `null` means "none pinned". */
  digests?: Record<string, string | null>;
  /** Where to download to; default as described in the module doc. */
  downloadDir?: string;
  /** fetch implementation for downloads. */
  fetch?: typeof fetch;
  /** Progress messages (e.g. `console.error`); default silent. */
  log?: (message: string) => void;
}

/** A loaded dataset: both splits plus where they came from. */
export interface LoadedDataset {
  /** The training split. */
  train: ImageDataset;
  /** The test split. */
  test: ImageDataset;
  /** Directory the files were read from. */
  dir: string;
  /** The files of each split, for messages (e.g. ".../train-images-idx3-ubyte.gz"). */
  files: { train: string; test: string };
  /** The dataset's built-in source description. */
  source: DatasetSource;
}

/**
 * `key` of `options.env`, else of the process environment. Without the permission to read it
 * (`--allow-env`), whether it is set cannot be told, and taking it as unset would quietly load
 * another copy of the data than the one it names: an error that says how to choose.
 */
function envValue(options: FindOptions, key: string): string | undefined {
  if (options.env) return options.env[key] || undefined;
  try {
    return Deno.env.get(key) || undefined;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied)) {
      throw e;
    }
    throw new DataError(
      `$${key} cannot be read (this process has no permission to read the environment ` +
        `variable ${key}), so whether it names the data folder cannot be told`,
      {
        cause: e,
        hint: `grant it (deno run --allow-env=${key}), or name the folder (--data-dir; the ` +
          "option dataDir), or ignore the environment (the option env: {})",
      },
    );
  }
}

function cwdOf(options: FindOptions): string {
  return options.cwd ?? Deno.cwd();
}

type PathKind = "file" | "dir" | "none";

async function pathKind(path: string): Promise<PathKind> {
  try {
    const s = await Deno.stat(path);
    return s.isDirectory ? "dir" : "file";
  } catch (e) {
    if (e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory) return "none";
    throw new DataError(`${path}: cannot be read (${describeError(e)})`, {
      file: path,
      cause: e,
      hint: "let this process read the folder (its permissions, or deno's --allow-read), or " +
        "point --data-dir at another copy",
    });
  }
}

async function isFile(path: string): Promise<boolean> {
  return (await pathKind(path)) === "file";
}

/** Directories searched for `name`, in order (see the module doc). */
export function candidateDirs(name: DatasetName, options: FindOptions = {}): string[] {
  const cwd = cwdOf(options);
  if (options.dataDir) {
    return [resolve(cwd, options.dataDir, name), resolve(cwd, options.dataDir)];
  }
  const env = envValue(options, "TAILGRAD_DATA");
  if (env) return [resolve(cwd, env, name), resolve(cwd, env)];
  const dirs = [resolve(cwd, "data", name)];
  if (options.systemDirs ?? true) dirs.push(...DATASET_SOURCES[name].systemDirs);
  return dirs;
}

/** What a folder holds of a dataset. */
interface DirState {
  /** "complete": every file; "partial": some, or a folder where a file should be. */
  kind: "complete" | "partial" | "absent";
  /** The folder holding the files (for CIFAR maybe the archive's subfolder). */
  dir: string;
  /** Complete IDX datasets: the four files (gzip or raw). */
  idx?: Record<keyof typeof IDX_FILES, string>;
  /** What is wrong with a partial folder, one line per file. */
  problems: string[];
  /** Partial folders: true when files are only missing (none is a folder). */
  onlyMissing: boolean;
  /** A CIFAR archive found in the folder. */
  archive?: string;
}

async function inspectIdx(dir: string): Promise<DirState> {
  const files: Partial<Record<keyof typeof IDX_FILES, string>> = {};
  const problems: string[] = [];
  let onlyMissing = true, present = 0;
  for (const [key, stem] of Object.entries(IDX_FILES) as [keyof typeof IDX_FILES, string][]) {
    const gz = join(dir, `${stem}.gz`), raw = join(dir, stem);
    const [kg, kr] = [await pathKind(gz), await pathKind(raw)];
    if (kg === "file") files[key] = gz;
    else if (kr === "file") files[key] = raw;
    else if (kg === "dir" || kr === "dir") {
      problems.push(`${kg === "dir" ? gz : raw} is a folder, expected the file`);
      onlyMissing = false;
    } else problems.push(`${gz} (or ${stem}) is missing`);
    if (files[key]) present++;
  }
  const kind = problems.length === 0 ? "complete" : present || !onlyMissing ? "partial" : "absent";
  return {
    kind,
    dir,
    idx: kind === "complete" ? files as Record<keyof typeof IDX_FILES, string> : undefined,
    problems,
    onlyMissing,
  };
}

async function inspectCifar(dir: string, source: DatasetSource): Promise<DirState> {
  const variant = source.format as CifarVariant;
  const wanted = [...CIFAR_FILES[variant].train, ...CIFAR_FILES[variant].test];
  const archivePath = join(dir, source.files[0].file);
  const archive = (await isFile(archivePath)) ? archivePath : undefined;
  let best: DirState | null = null;
  for (const d of [dir, join(dir, CIFAR_ARCHIVE_DIR[variant])]) {
    const problems: string[] = [];
    let present = 0, onlyMissing = true;
    for (const f of wanted) {
      const k = await pathKind(join(d, f));
      if (k === "file") present++;
      else if (k === "dir") {
        problems.push(`${join(d, f)} is a folder, expected the file`);
        onlyMissing = false;
      } else problems.push(`${join(d, f)} is missing`);
    }
    const kind = problems.length === 0
      ? "complete"
      : present || !onlyMissing
      ? "partial"
      : "absent";
    const state: DirState = { kind, dir: d, problems, onlyMissing, archive };
    if (kind === "complete") return state;
    if (!best || (best.kind === "absent" && kind === "partial")) best = state;
  }
  return best!;
}

function inspectDir(dir: string, source: DatasetSource): Promise<DirState> {
  return source.format === "idx" ? inspectIdx(dir) : inspectCifar(dir, source);
}

/** Where a dataset is, or where it would go. */
type Location =
  | { kind: "found"; state: DirState }
  | { kind: "fixable"; state: DirState; via: string }
  | {
    kind: "absent";
    target: string;
    looked: string[];
    /** The folder the user named (--data-dir or $TAILGRAD_DATA), when it does not exist. */
    missingRoot?: { root: string; via: string };
  };

function refuseFile(path: string, via: string, source: DatasetSource): never {
  throw new DataError(
    `${via} ${path} is a file; expected a folder that holds ${source.title} (or its parent)`,
    { file: path, flag: via.startsWith("--") ? via : undefined, hint: `point ${via} at a folder` },
  );
}

/** Inspects a folder the user named (or ./data/<name>): complete, fixable, or an error. */
async function settle(dir: string, source: DatasetSource, via: string): Promise<Location | null> {
  const state = await inspectDir(dir, source);
  if (state.kind === "complete") return { kind: "found", state };
  if (state.archive || (state.kind === "partial" && state.onlyMissing)) {
    return { kind: "fixable", state, via };
  }
  if (state.kind === "absent") return null;
  throw incomplete(state, source, via);
}

function incomplete(state: DirState, source: DatasetSource, via: string): DataError {
  return new DataError(
    `${state.dir} (from ${via}) holds an incomplete or damaged copy of ${source.title}:\n` +
      state.problems.map((p) => `  - ${p}`).join("\n"),
    {
      file: state.dir,
      hint: `put the missing files there, or point ${via} at a complete copy` +
        (source.format === "idx" ? " (or allow downloads to fetch the missing files)" : ""),
    },
  );
}

/** Finds the dataset under the rules of the module doc; throws where a named place is wrong. */
async function locate(name: DatasetName, options: FindOptions): Promise<Location> {
  const source = DATASET_SOURCES[name];
  const cwd = cwdOf(options);
  const named = options.dataDir
    ? { root: resolve(cwd, options.dataDir), via: "--data-dir" }
    : envValue(options, "TAILGRAD_DATA")
    ? { root: resolve(cwd, envValue(options, "TAILGRAD_DATA")!), via: "$TAILGRAD_DATA" }
    : null;
  if (named) {
    const { root, via } = named;
    const sub = join(root, name);
    const rootKind = await pathKind(root);
    if (rootKind === "file") refuseFile(root, via, source);
    if (rootKind === "dir") {
      const subKind = await pathKind(sub);
      if (subKind === "file") refuseFile(sub, via, source);
      if (subKind === "dir") {
        const at = await settle(sub, source, via);
        if (at) return at;
      } else {
        const here = await inspectDir(root, source);
        const mayHoldFiles = via === "--data-dir" || basename(root) === name;
        if (here.kind !== "absent" || here.archive) {
          if (!mayHoldFiles) {
            throw new DataError(
              `$TAILGRAD_DATA (${root}) holds dataset files directly; it should name the ` +
                `folder that holds one subfolder per dataset (${name}/, ...)`,
              {
                file: root,
                hint: `move the files into ${sub}, or pass --data-dir ${root} for this run`,
              },
            );
          }
          const at = await settle(root, source, via);
          if (at) return at;
        }
      }
    }
    const missingRoot = rootKind === "none" ? { root, via } : undefined;
    return { kind: "absent", target: sub, looked: [sub, root], missingRoot };
  }
  const local = resolve(cwd, "data", name);
  const looked = candidateDirs(name, options);
  const localKind = await pathKind(local);
  if (localKind === "file") refuseFile(local, "./data", source);
  if (localKind === "dir") {
    const at = await settle(local, source, `${local}`);
    if (at) return at;
  }
  for (const dir of looked.slice(1)) {
    if ((await pathKind(dir)) !== "dir") continue;
    const state = await inspectDir(dir, source);
    if (state.kind === "complete") return { kind: "found", state };
    if (state.kind === "partial") throw incomplete(state, source, "the system copy");
  }
  return { kind: "absent", target: local, looked };
}

/** The first candidate directory that holds the dataset's files, or null. */
export async function findDataset(
  name: DatasetName,
  options: FindOptions = {},
): Promise<string | null> {
  const at = await locate(name, options);
  return at.kind === "found" ? at.state.dir : null;
}

/** Where a download of `name` goes by default. */
export function defaultDownloadDir(name: DatasetName, options: LoadOptions = {}): string {
  const cwd = cwdOf(options);
  if (options.downloadDir) return resolve(cwd, options.downloadDir);
  if (options.dataDir) return resolve(cwd, options.dataDir, name);
  const env = envValue(options, "TAILGRAD_DATA");
  if (env) return resolve(cwd, env, name);
  return resolve(cwd, "data", name);
}

/** A multi-line "how to get it" hint for an absent dataset. */
export function howToGet(name: DatasetName, options: LoadOptions = {}): string {
  const s = DATASET_SOURCES[name];
  const target = defaultDownloadDir(name, options);
  const lines: string[] = [];
  if (s.packageHint) {
    lines.push(`install the system package: ${s.packageHint} (Debian/Ubuntu)`);
  }
  const urls = s.files.map((f) => (options.baseUrl ?? s.baseUrl) + f.file).join(", ");
  if (s.format === "idx") {
    lines.push(`download ${urls} into ${target}`);
  } else {
    lines.push(
      `download ${urls} and unpack it into ${target} (tar xzf ${s.files[0].file} -C ${target})`,
    );
  }
  if (!options.allowDownload) {
    lines.push(
      "or let tailgrad download and verify it: allow downloads (--download of deno task " +
        "train, or the option allowDownload of loadDataset) with network access " +
        "(deno --allow-net)",
    );
  }
  lines.push("or point --data-dir or $TAILGRAD_DATA at a directory that holds it");
  return lines.map((l) => `  - ${l}`).join("\n");
}

function digestFor(file: string, pinned: string | null, options: LoadOptions): string | null {
  if (options.digests && file in options.digests) return options.digests[file];
  return pinned;
}

/**
 * Downloads `name` into `dir` (default {@linkcode defaultDownloadDir}), verifying every file.
 * IDX files already present are kept. A CIFAR archive already in `dir` is checked against its
 * pinned digest and kept; one downloaded here is unpacked and removed.
 * Returns the directory holding the dataset.
 */
export async function downloadDataset(
  name: DatasetName,
  options: LoadOptions = {},
  dir: string = defaultDownloadDir(name, options),
): Promise<string> {
  const source = DATASET_SOURCES[name];
  const base = options.baseUrl ?? source.baseUrl;
  const dl = { fetch: options.fetch };
  if (source.format === "idx") {
    for (const f of source.files) {
      const dest = join(dir, f.file);
      const raw = join(dir, f.file.replace(/\.gz$/, ""));
      if (await isFile(dest) || await isFile(raw)) continue;
      options.log?.(`downloading ${base + f.file} -> ${dest}`);
      await downloadVerified(base + f.file, dest, digestFor(f.file, f.sha256, options), dl);
    }
    return dir;
  }
  const archive = source.files[0];
  const archivePath = join(dir, archive.file);
  if (await isFile(archivePath)) {
    await unpackFoundArchive(archivePath, dir, source, options);
    return dir;
  }
  options.log?.(`downloading ${base + archive.file} -> ${archivePath}`);
  await downloadVerified(
    base + archive.file,
    archivePath,
    digestFor(archive.file, archive.sha256, options),
    dl,
  );
  try {
    await extractCifarArchive(archivePath, dir, source.format);
  } finally {
    // the program downloaded it: its own file to remove
    await Deno.remove(archivePath).catch(() => {});
  }
  return dir;
}

/**
 * Unpacks a CIFAR archive the program did not download (a user placed it): only after its
 * SHA-256 matches the pinned one; the archive itself is never modified or removed.
 */
async function unpackFoundArchive(
  archivePath: string,
  dir: string,
  source: DatasetSource,
  options: LoadOptions,
): Promise<void> {
  const file = source.files[0].file;
  const pinned = digestFor(file, source.files[0].sha256, options);
  const unpackYourself = `unpack it yourself (tar xzf ${archivePath} -C ${dir}) or replace it ` +
    `with the official ${source.baseUrl + file}`;
  if (!pinned) {
    throw new DataError(
      `${archivePath}: no SHA-256 digest is pinned for ${file}, so the archive cannot be checked`,
      { file: archivePath, hint: unpackYourself },
    );
  }
  const actual = await sha256Hex(await readFileBytes(archivePath));
  if (actual !== pinned.toLowerCase()) {
    throw new DataError(
      `${archivePath}: SHA-256 ${actual} does not match the pinned digest ${pinned} of the ` +
        `official ${file}; the archive was left untouched`,
      { file: archivePath, hint: unpackYourself },
    );
  }
  options.log?.(`unpacking ${archivePath} (SHA-256 verified; the archive is kept)`);
  await extractCifarArchive(archivePath, dir, source.format as CifarVariant);
}

/**
 * Unpacks the `.bin` files of a CIFAR `.tar.gz` archive into `dest` (flat), each written
 * atomically; a `.bin` file already in `dest` is kept as it is (never overwritten).
 * Throws {@linkcode DataError} if the archive lacks any of them.
 */
export async function extractCifarArchive(
  archivePath: string,
  dest: string,
  variant: CifarVariant,
): Promise<void> {
  const wanted = new Set([...CIFAR_FILES[variant].train, ...CIFAR_FILES[variant].test]);
  const tar = await gunzip(await readFileBytes(archivePath), archivePath);
  const found = new Set<string>();
  for (const entry of readTar(tar, archivePath)) {
    const b = basename(entry.name);
    if (entry.type === "0" && wanted.has(b) && !found.has(b)) {
      found.add(b);
      if ((await pathKind(join(dest, b))) === "none") {
        await writeDataFile(join(dest, b), entry.data);
      }
    }
  }
  const missing = [...wanted].filter((f) => !found.has(f));
  if (missing.length) {
    throw damagedFile(
      archivePath,
      `archive lacks ${missing.join(", ")} (expected every .bin file of ${variant})`,
    );
  }
}

/**
 * Returns the directory holding `name`, unpacking a verified archive found in place or
 * downloading it when absent and allowed. Throws {@linkcode DataError} saying where it looked
 * and how to get the data otherwise, or naming what is wrong with a folder the user named.
 */
export async function ensureDataset(name: DatasetName, options: LoadOptions = {}): Promise<string> {
  return (await ensureState(name, options)).dir;
}

async function ensureState(name: DatasetName, options: LoadOptions): Promise<DirState> {
  const source = DATASET_SOURCES[name];
  const at = await locate(name, options);
  if (at.kind === "found") return at.state;
  let target: string, looked: string;
  if (at.kind === "fixable") {
    if (at.state.archive) {
      await unpackFoundArchive(at.state.archive, dirname(at.state.archive), source, options);
      return await completeOrThrow(dirname(at.state.archive), source, at.via);
    }
    if (!options.allowDownload) throw incomplete(at.state, source, at.via);
    target = at.state.dir;
    looked = at.state.dir;
  } else {
    if (at.missingRoot) throw missingRoot(name, source, at.missingRoot);
    target = options.downloadDir ? resolve(cwdOf(options), options.downloadDir) : at.target;
    looked = at.looked.join(", ");
    if (!options.allowDownload) {
      throw new DataError(
        `${source.title} was not found (looked in: ${looked}) and downloading is not allowed`,
        { file: at.looked[0], hint: `get it one of these ways:\n${howToGet(name, options)}` },
      );
    }
  }
  // refused before "downloading ..." is logged, and not worded as a failed mkdir of a folder
  // that may well exist
  if ((await Deno.permissions.query({ name: "write", path: target })).state !== "granted") {
    throw new DataError(
      `${source.title} was not found (looked in: ${looked}) and this process may not write ` +
        `${target} to download it there`,
      {
        file: target,
        hint: "point --data-dir (or $TAILGRAD_DATA) at a folder this process may write; or " +
          `get it another way:\n${howToGet(name, options)}`,
      },
    );
  }
  try {
    await downloadDataset(name, options, target);
    return await completeOrThrow(target, source, target);
  } catch (e) {
    // the download's own hint first (retry, permissions), then the other ways to get it
    const first = e instanceof DataError && e.hint ? `${e.hint}; or get it another way:` : null;
    throw new DataError(
      `${source.title} was not found (looked in: ${looked}) and downloading it failed: ` +
        problemOf(e),
      {
        file: e instanceof DataError ? e.file : undefined,
        cause: e,
        hint: `${first ?? "get it another way:"}\n${howToGet(name, options)}`,
      },
    );
  }
}

/**
 * A folder the user named that does not exist: an error before any download (a mistyped path
 * would otherwise fill a new folder with a fresh copy), downloads allowed or not.
 */
function missingRoot(
  name: DatasetName,
  source: DatasetSource,
  { root, via }: { root: string; via: string },
): DataError {
  const instead = via === "--data-dir" ? "leave --data-dir out" : "unset $TAILGRAD_DATA";
  return new DataError(
    `${via} ${root} does not exist, so ${source.title} was not found: a folder named there is ` +
      "the only place looked in, and nothing is downloaded into one that is not there",
    {
      file: root,
      ...(via === "--data-dir" ? { flag: "--data-dir" } : {}),
      hint: `check the path; create the folder to download ${source.title} into ` +
        `${join(root, name)}, or ${instead} to use ./data/${name}`,
    },
  );
}

async function completeOrThrow(dir: string, source: DatasetSource, via: string) {
  const state = await inspectDir(dir, source);
  if (state.kind !== "complete") throw incomplete(state, source, via);
  return state;
}

/**
 * Finds (or downloads, if allowed) and reads both splits of a dataset, checking that they
 * agree (see src/data/validate.ts).
 */
export async function loadDataset(
  name: DatasetName,
  options: LoadOptions = {},
): Promise<LoadedDataset> {
  const source = DATASET_SOURCES[name];
  const state = await ensureState(name, options);
  const dir = state.dir;
  let train: ImageDataset, test: ImageDataset, files: LoadedDataset["files"];
  if (source.format === "idx") {
    const f = state.idx!;
    const opts = { name, numClasses: source.numClasses };
    [train, test] = await Promise.all([
      loadIdxDataset(f.trainImages, f.trainLabels, { ...opts, split: "train" }),
      loadIdxDataset(f.testImages, f.testLabels, { ...opts, split: "test" }),
    ]);
    files = { train: f.trainImages, test: f.testImages };
  } else {
    [train, test] = await Promise.all([
      loadCifarDataset(dir, source.format, "train"),
      loadCifarDataset(dir, source.format, "test"),
    ]);
    const names = CIFAR_FILES[source.format];
    files = {
      train: join(dir, names.train.length > 1 ? "data_batch_{1..5}.bin" : names.train[0]),
      test: join(dir, names.test[0]),
    };
  }
  checkSplitsAgree(train, test, files);
  return { train, test, dir, files, source };
}

/** Reads only the training labels of an MNIST-style dataset (fast: no images). */
export async function loadIdxTrainLabels(
  name: DatasetName,
  options: FindOptions = {},
): Promise<{ labels: Uint8Array; dir: string }> {
  const source = DATASET_SOURCES[name];
  if (source.format !== "idx") throw new TypeError(`${name} is not an IDX dataset`);
  const state = await ensureState(name, options);
  return { labels: await readIdxLabels(state.idx!.trainLabels, source.numClasses), dir: state.dir };
}
