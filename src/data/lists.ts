/**
 * Image lists of the large long-tailed benchmarks. The list-file layout of Liu et al. (OLTR,
 * CVPR 2019) used by ImageNet-LT and Places-LT (`ImageNet_LT_train.txt`, `_val.txt`,
 * `_test.txt`, `Places_LT_*.txt`): one `relative/path.jpg label` per line, paths relative to
 * the dataset root. Only paths and labels are held in memory; images are read when batches are
 * made (see jpeg/loader.ts).
 *
 * Everything about a list is checked before training starts: the format of every line, label
 * ranges, that every image exists ({@linkcode checkImages}), optionally that every header is a
 * JPEG the decoder supports. Each failure is a {@linkcode DataError} naming the list file and
 * line (or the JSON entry, for iNaturalist lists).
 */
import { join } from "node:path";
import { classCounts } from "./dataset.ts";
import { badJpegError, DataError, imageReadError, unreadableFile } from "./errors.ts";
import { longTailSplit } from "./split.ts";
import { JpegError, readJpegInfo } from "./jpeg/decode.ts";

/** Labelled images under a root folder, from a list file or an annotation file. */
export interface ImageList {
  /** The list or annotation file the entries come from. */
  source: string;
  /** Folder the paths are relative to. */
  root: string;
  /** Image paths relative to `root`, in file order. */
  paths: string[];
  /** Dense labels in `[0, numClasses)`, one per path. */
  labels: Int32Array;
  /** Number of classes. */
  numClasses: number;
  /** Where entry `i` is defined, for messages: "file:line" or "file: images[k]". */
  where(i: number): string;
}

/** The full path of entry `i` of a list. */
export function imagePath(list: ImageList, i: number): string {
  return join(list.root, list.paths[i]);
}

/** Per-class image counts of a list. */
export function listCounts(list: ImageList): number[] {
  return classCounts(list.labels, list.numClasses);
}

/** Options of {@linkcode parseList} and {@linkcode readList}. */
export interface ListOptions {
  /**
   * Number of classes; labels must be below it. Default: one more than the largest label (give
   * the training list's count when reading its val/test lists).
   */
  numClasses?: number;
}

/** Reads a list file (see the module doc). Errors name the file and line. */
export async function readList(
  file: string,
  root: string,
  options: ListOptions = {},
): Promise<ImageList> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw unreadableFile(file, e, { what: "list file", hint: "check the path of the list file" });
  }
  return parseList(text, file, root, options);
}

/** Parses the text of a list file named `file` (used in messages). */
export function parseList(
  text: string,
  file: string,
  root: string,
  options: ListOptions = {},
): ImageList {
  const paths: string[] = [];
  const labels: number[] = [];
  const lines: number[] = [];
  const bad = (message: string, hint = LIST_FORMAT_HINT) => new DataError(message, { file, hint });
  const rows = text.split("\n");
  for (let n = 0; n < rows.length; n++) {
    const line = rows[n].trim();
    if (line === "") continue;
    const parts = line.split(/\s+/);
    const at = `${file}:${n + 1}`;
    if (parts.length !== 2) {
      throw bad(`${at}: expected "relative/path.jpg label", got "${truncate(line)}"`);
    }
    if (!/^\d+$/.test(parts[1])) {
      throw bad(`${at}: label "${truncate(parts[1])}" is not a non-negative integer`);
    }
    const label = Number(parts[1]);
    if (options.numClasses !== undefined && label >= options.numClasses) {
      throw bad(
        `${at}: label ${label} is out of range [0, ${options.numClasses}) (the class count ` +
          "comes from the training list)",
        "use the val/test list of the same dataset as the training list: its labels must be " +
          `classes of the training list (0 to ${options.numClasses - 1})`,
      );
    }
    paths.push(parts[0]);
    labels.push(label);
    lines.push(n + 1);
  }
  if (paths.length === 0) {
    throw bad(
      `list file ${file} has no entries`,
      "check that it is the right file (--train-list, --eval-list, or the layout's file in " +
        "--data-root) and that it was written out completely",
    );
  }
  const numClasses = options.numClasses ?? Math.max(...labels) + 1;
  return {
    source: file,
    root,
    paths,
    labels: Int32Array.from(labels),
    numClasses,
    where: (i) => `${file}:${lines[i]}`,
  };
}

/** What to do about a list line that does not parse. */
const LIST_FORMAT_HINT = 'convert the list to one "relative/path.jpg label" per line, labels ' +
  'counted from 0 (the OLTR list format; README: "Laying out the datasets")';

function truncate(s: string, n = 80): string {
  return s.length > n ? `${s.slice(0, n)}...` : s;
}

/** Options of {@linkcode checkImages}. */
export interface CheckOptions {
  /** Also read each file's header and check it is a JPEG the decoder supports; default false. */
  headers?: boolean;
  /** Files checked at once; default 32. */
  concurrency?: number;
}

/** Bytes read per file for a header check (SOF follows the APP segments, at most 64 KiB each). */
const HEADER_BYTES = 1 << 18;

/**
 * Checks that every image of the list exists (and with `headers`, that it starts as a supported
 * JPEG). Throws a {@linkcode DataError} naming the list entry and the image.
 */
export async function checkImages(list: ImageList, options: CheckOptions = {}): Promise<void> {
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < list.paths.length; i = next++) {
      await checkImage(list, i, options.headers ?? false);
    }
  };
  await Promise.all(Array.from({ length: options.concurrency ?? 32 }, worker));
}

async function checkImage(list: ImageList, i: number, headers: boolean): Promise<void> {
  const path = imagePath(list, i);
  let head: Uint8Array | null = null;
  try {
    if (!headers) {
      const info = await Deno.stat(path);
      if (!info.isFile) {
        throw new DataError(`${list.where(i)}: ${path} is not a file; expected a JPEG image`, {
          file: path,
          hint: "correct the entry's path (relative to --data-root), or remove the entry",
        });
      }
      return;
    }
    using f = await Deno.open(path);
    const buf = new Uint8Array(HEADER_BYTES);
    let n = 0;
    while (n < buf.length) {
      const r = await f.read(buf.subarray(n));
      if (r === null) break;
      n += r;
    }
    head = buf.subarray(0, n);
  } catch (e) {
    if (e instanceof DataError) throw e;
    throw imageReadError(list.where(i), path, e);
  }
  try {
    readJpegInfo(head);
  } catch (e) {
    if (!(e instanceof JpegError)) throw e;
    throw badJpegError(list.where(i), path, e.message);
  }
}

/** A training list split into the training part and a balanced dev set. */
export interface DevSplit {
  /** Entries kept for training, ascending. */
  train: Int32Array;
  /** The balanced dev set: `devPerClass` entries of each class, ascending. */
  dev: Int32Array;
  /** Per-class counts of `train` (for class weights and shot groups). */
  counts: number[];
}

/**
 * Takes a balanced dev set of `devPerClass` images per class out of a training list, chosen by
 * the seeded per-class shuffle of the small datasets (split.ts); the rest is the training set.
 * Every class must keep at least one training image.
 */
export function devSplit(list: ImageList, seed: number, devPerClass: number): DevSplit {
  const counts = listCounts(list);
  const short = counts.findIndex((n) => n <= devPerClass);
  if (short >= 0) {
    const smallest = Math.min(...counts);
    const poorest = counts.indexOf(smallest);
    const images = smallest === 1 ? "1 image" : `${smallest} images`;
    throw new DataError(
      `${list.source}: class ${short} has ${counts[short]} images, not more than ` +
        `--dev-per-class ${devPerClass} (the dev set takes that many of each class and one ` +
        "must remain to train on)",
      {
        file: list.source,
        flag: "--dev-per-class",
        hint: smallest > 1
          ? `lower --dev-per-class to ${smallest - 1} or less (the smallest class has ${smallest})`
          : `class ${poorest} has ${images}: add images of it to the training list`,
      },
    );
  }
  const split = longTailSplit(list.labels, list.numClasses, {
    imbalanceFactor: 1,
    seed,
    devPerClass,
  });
  return { train: split.train, dev: split.dev, counts: split.counts };
}
