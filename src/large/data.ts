/**
 * The data of a large run: the layout's list or annotation files under `--data-root`, parsed and
 * checked (every line or JSON entry, every image present) before anything is written; the
 * balanced dev set taken from the training list first; class counts and weights.
 */
import { join } from "node:path";
import { type ImageList, readList } from "../data/lists.ts";
import { checkImages, type DevSplit, devSplit } from "../data/lists.ts";
import { readInat } from "../data/inat.ts";
import { DataError, describeError } from "../data/errors.ts";
import { effectiveNumberWeights } from "../data/weights.ts";
import type { LargeConfig, LargePreset } from "./config.ts";

/** File names of each layout inside the data root. */
export const LAYOUT_FILES: Record<LargePreset, { train: string; val: string; test: string }> = {
  "imagenet-lt": {
    train: "ImageNet_LT_train.txt",
    val: "ImageNet_LT_val.txt",
    test: "ImageNet_LT_test.txt",
  },
  "places-lt": {
    train: "Places_LT_train.txt",
    val: "Places_LT_val.txt",
    test: "Places_LT_test.txt",
  },
  inat2017: { train: "train2017.json", val: "val2017.json", test: "" },
  inat2018: { train: "train2018.json", val: "val2018.json", test: "" },
};

/** Everything a large run needs to know about its data. */
export interface LargeData {
  /** The training list (dev entries included; see `split`). */
  train: ImageList;
  /** The evaluation list. */
  eval: ImageList;
  /** Training / dev entries and the training counts. */
  split: DevSplit;
  /** Number of classes. */
  numClasses: number;
  /** Effective-number class weights of the training counts. */
  classWeights: number[];
  /** Evaluation images per class. */
  evalCounts: number[];
}

/** The list and evaluation files of a config. */
export function dataFiles(cfg: LargeConfig): { train: string; eval: string } {
  const files = LAYOUT_FILES[cfg.preset];
  return {
    train: cfg.trainList ?? join(cfg.dataRoot, files.train),
    eval: cfg.evalList ?? join(cfg.dataRoot, files[cfg.evalSplit]),
  };
}

/**
 * Reads and checks the data of `cfg` (lists or JSON, every image present), takes the dev set.
 * Throws a {@linkcode DataError} naming the file and line or entry.
 */
export async function loadLargeData(cfg: LargeConfig): Promise<LargeData> {
  const root = cfg.dataRoot;
  const rootHint = "pass the folder holding the dataset's list files and images";
  try {
    const info = await Deno.stat(root);
    if (!info.isDirectory) {
      throw new DataError(`--data-root ${root} is not a folder`, {
        file: root,
        flag: "--data-root",
        hint: rootHint,
      });
    }
  } catch (e) {
    if (e instanceof DataError) throw e;
    const missing = e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory;
    throw new DataError(
      missing
        ? `--data-root ${root} does not exist`
        : `--data-root ${root} cannot be read (${describeError(e)})`,
      { file: root, flag: "--data-root", hint: rootHint, cause: e },
    );
  }
  const files = dataFiles(cfg);
  await requireListFile(cfg, "train", files.train);
  await requireListFile(cfg, "eval", files.eval);
  const json = cfg.preset.startsWith("inat");
  let train: ImageList, evalList: ImageList;
  if (json) {
    const t = await readInat(files.train, root);
    train = t;
    evalList = await readInat(files.eval, root, { categories: t.categories });
  } else {
    train = await readList(files.train, root);
    evalList = await readList(files.eval, root, { numClasses: train.numClasses });
  }
  await checkImages(train);
  await checkImages(evalList);
  const split = devSplit(train, cfg.seed, cfg.devPerClass);
  const numClasses = train.numClasses;
  const evalCounts = new Array(numClasses).fill(0);
  for (const y of evalList.labels) evalCounts[y]++;
  return {
    train,
    eval: evalList,
    split,
    numClasses,
    classWeights: Array.from(effectiveNumberWeights(split.counts, cfg.beta)),
    evalCounts,
  };
}

/**
 * A list or annotation file that is not there: an error naming it and where it comes from, the
 * layout's file in --data-root or --train-list / --eval-list.
 */
async function requireListFile(
  cfg: LargeConfig,
  which: "train" | "eval",
  file: string,
): Promise<void> {
  try {
    await Deno.stat(file);
    return;
  } catch (e) {
    if (!(e instanceof Deno.errors.NotFound || e instanceof Deno.errors.NotADirectory)) return;
  }
  const flag = `--${which}-list`;
  const given = which === "train" ? cfg.trainList : cfg.evalList;
  const kind = cfg.preset.startsWith("inat") ? "annotation file" : "list file";
  const layout = LAYOUT_FILES[cfg.preset];
  const expected = [layout.train, layout.val, layout.test].filter((f) => f).join(", ");
  throw new DataError(
    given !== null
      ? `${flag} ${file}: the ${kind} does not exist`
      : `${kind} ${file} does not exist: --data-root ${cfg.dataRoot} lacks the ${cfg.preset} ` +
        `layout's ${which === "train" ? "training" : `${cfg.evalSplit}`} file`,
    {
      file,
      flag: given !== null ? flag : "--data-root",
      hint: given !== null
        ? `check the path given to ${flag}, or leave it out to use the layout's file in --data-root`
        : `put the layout's files (${expected}) in --data-root (README: "Laying out the ` +
          `datasets"), or name the file with ${flag}`,
    },
  );
}
