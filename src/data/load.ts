/**
 * Finding, downloading and loading datasets.
 *
 * Search order for a dataset `<name>` (see {@linkcode candidateDirs}):
 * 1. `--data-dir` (`options.dataDir`): `<dataDir>/<name>`, then `<dataDir>` itself;
 * 2. `$TAILGRAD_DATA/<name>`;
 * 3. `./data/<name>` (relative to `options.cwd`, default the working directory);
 * 4. system directories, e.g. Debian's `/usr/share/datasets/fashion-mnist`.
 *
 * A directory holds an MNIST-style dataset when it has the four IDX files, each either gzip
 * (`*.gz`) or raw; a CIFAR dataset when it has the `.bin` files, directly or in the folder the
 * official archive unpacks into (`cifar-10-batches-bin/`, `cifar-100-binary/`).
 *
 * When the dataset is absent and `allowDownload` is set, it is downloaded from its official
 * location into the first writable choice of `<dataDir>/<name>`, `$TAILGRAD_DATA/<name>`,
 * `./data/<name>`, each file verified against its pinned SHA-256 before it is moved into place.
 * CIFAR archives are unpacked (only the `.bin` files, each written atomically) and removed.
 */
import { basename, join, resolve } from "node:path";
import { DataError, describeError } from "./errors.ts";
import type { DatasetName, ImageDataset } from "./dataset.ts";
import { loadIdxDataset, readIdxLabels } from "./idx.ts";
import { CIFAR_ARCHIVE_DIR, CIFAR_FILES, type CifarVariant, loadCifarDataset } from "./cifar.ts";
import { DATASET_SOURCES, type DatasetSource, IDX_FILES } from "./sources.ts";
import { downloadVerified, writeDataFile } from "./download.ts";
import { gunzip, readFileBytes } from "./gzip.ts";
import { readTar } from "./tar.ts";

/** Options controlling where datasets are looked for. */
export interface FindOptions {
  /** The `--data-dir` flag. */
  dataDir?: string;
  /**
   * Environment lookup for `TAILGRAD_DATA`; default `Deno.env` (an unreadable environment
   * counts as unset). Pass `{}` to ignore the environment.
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
  /** The dataset's built-in source description. */
  source: DatasetSource;
}

function envValue(options: FindOptions, key: string): string | undefined {
  if (options.env) return options.env[key] || undefined;
  try {
    return Deno.env.get(key) || undefined;
  } catch {
    return undefined;
  }
}

function cwdOf(options: FindOptions): string {
  return options.cwd ?? Deno.cwd();
}

/** Directories searched for `name`, in order (see the module doc). */
export function candidateDirs(name: DatasetName, options: FindOptions = {}): string[] {
  const dirs: string[] = [];
  const cwd = cwdOf(options);
  if (options.dataDir) {
    dirs.push(resolve(cwd, options.dataDir, name), resolve(cwd, options.dataDir));
  }
  const env = envValue(options, "TAILGRAD_DATA");
  if (env) dirs.push(resolve(cwd, env, name));
  dirs.push(resolve(cwd, "data", name));
  if (options.systemDirs ?? true) dirs.push(...DATASET_SOURCES[name].systemDirs);
  return [...new Set(dirs)];
}

async function isFile(path: string): Promise<boolean> {
  try {
    return (await Deno.stat(path)).isFile;
  } catch {
    return false;
  }
}

/** The four IDX paths found in `dir` (gzip or raw), or null if any is missing. */
async function idxFilesIn(dir: string): Promise<Record<keyof typeof IDX_FILES, string> | null> {
  const out: Partial<Record<keyof typeof IDX_FILES, string>> = {};
  for (const [key, stem] of Object.entries(IDX_FILES) as [keyof typeof IDX_FILES, string][]) {
    const gz = join(dir, `${stem}.gz`), raw = join(dir, stem);
    if (await isFile(gz)) out[key] = gz;
    else if (await isFile(raw)) out[key] = raw;
    else return null;
  }
  return out as Record<keyof typeof IDX_FILES, string>;
}

/** The directory holding the CIFAR `.bin` files under `dir`, or null. */
async function cifarDirIn(dir: string, variant: CifarVariant): Promise<string | null> {
  const files = [...CIFAR_FILES[variant].train, ...CIFAR_FILES[variant].test];
  for (const d of [dir, join(dir, CIFAR_ARCHIVE_DIR[variant])]) {
    let all = true;
    for (const f of files) {
      if (!(await isFile(join(d, f)))) {
        all = false;
        break;
      }
    }
    if (all) return d;
  }
  return null;
}

async function holdsDataset(dir: string, source: DatasetSource): Promise<string | null> {
  if (source.format === "idx") return (await idxFilesIn(dir)) ? dir : null;
  return await cifarDirIn(dir, source.format);
}

/** The first candidate directory that holds the dataset's files, or null. */
export async function findDataset(
  name: DatasetName,
  options: FindOptions = {},
): Promise<string | null> {
  const source = DATASET_SOURCES[name];
  for (const dir of candidateDirs(name, options)) {
    const found = await holdsDataset(dir, source);
    if (found) return found;
  }
  return null;
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
      "or let tailgrad download and verify it: allow downloads (option allowDownload) " +
        "with network access (deno --allow-net)",
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
 * IDX files already present are kept; CIFAR archives are unpacked and removed.
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
      if (await isFile(dest)) continue;
      options.log?.(`downloading ${base + f.file} -> ${dest}`);
      await downloadVerified(base + f.file, dest, digestFor(f.file, f.sha256, options), dl);
    }
    return dir;
  }
  const variant = source.format;
  const archive = source.files[0];
  const archivePath = join(dir, archive.file);
  if (!(await isFile(archivePath))) {
    options.log?.(`downloading ${base + archive.file} -> ${archivePath}`);
    await downloadVerified(
      base + archive.file,
      archivePath,
      digestFor(archive.file, archive.sha256, options),
      dl,
    );
  }
  await extractCifarArchive(archivePath, dir, variant);
  await Deno.remove(archivePath).catch(() => {});
  return dir;
}

/**
 * Unpacks the `.bin` files of a CIFAR `.tar.gz` archive into `dest` (flat), each written
 * atomically. Throws {@linkcode DataError} if the archive lacks any of them.
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
      await writeDataFile(join(dest, b), entry.data);
      found.add(b);
    }
  }
  const missing = [...wanted].filter((f) => !found.has(f));
  if (missing.length) {
    throw new DataError(`${archivePath}: archive lacks ${missing.join(", ")}`, {
      file: archivePath,
    });
  }
}

/**
 * Returns the directory holding `name`, downloading it when absent and allowed.
 * Throws {@linkcode DataError} saying where it looked and how to get the data otherwise.
 */
export async function ensureDataset(name: DatasetName, options: LoadOptions = {}): Promise<string> {
  const source = DATASET_SOURCES[name];
  const found = await findDataset(name, options);
  if (found) return found;
  const looked = candidateDirs(name, options).join(", ");
  if (!options.allowDownload) {
    throw new DataError(
      `${source.title} was not found (looked in: ${looked}) and downloading is not allowed. ` +
        `To get it:\n${howToGet(name, options)}`,
    );
  }
  try {
    const dir = await downloadDataset(name, options);
    const there = await holdsDataset(dir, source);
    if (!there) throw new DataError(`${dir}: download finished but the files are incomplete`);
    return there;
  } catch (e) {
    const msg = e instanceof Error ? e.message : describeError(e);
    throw new DataError(
      `${source.title} was not found (looked in: ${looked}) and downloading it failed: ` +
        `${msg}\nTo get it:\n${howToGet(name, options)}`,
      { file: e instanceof DataError ? e.file : undefined, cause: e },
    );
  }
}

/** Finds (or downloads, if allowed) and reads both splits of a dataset. */
export async function loadDataset(
  name: DatasetName,
  options: LoadOptions = {},
): Promise<LoadedDataset> {
  const source = DATASET_SOURCES[name];
  const dir = await ensureDataset(name, options);
  if (source.format === "idx") {
    const files = await idxFilesIn(dir);
    if (!files) throw new DataError(`${dir}: IDX files disappeared`, { file: dir });
    const opts = { name, numClasses: source.numClasses };
    const [train, test] = await Promise.all([
      loadIdxDataset(files.trainImages, files.trainLabels, { ...opts, split: "train" }),
      loadIdxDataset(files.testImages, files.testLabels, { ...opts, split: "test" }),
    ]);
    return { train, test, dir, source };
  }
  const [train, test] = await Promise.all([
    loadCifarDataset(dir, source.format, "train"),
    loadCifarDataset(dir, source.format, "test"),
  ]);
  return { train, test, dir, source };
}

/** Reads only the training labels of an MNIST-style dataset (fast: no images). */
export async function loadIdxTrainLabels(
  name: DatasetName,
  options: FindOptions = {},
): Promise<{ labels: Uint8Array; dir: string }> {
  const source = DATASET_SOURCES[name];
  if (source.format !== "idx") throw new TypeError(`${name} is not an IDX dataset`);
  const dir = await ensureDataset(name, options);
  const files = await idxFilesIn(dir);
  if (!files) throw new DataError(`${dir}: IDX files disappeared`, { file: dir });
  return { labels: await readIdxLabels(files.trainLabels, source.numClasses), dir };
}
