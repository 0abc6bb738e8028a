/**
 * Checks across the splits of a dataset, run before any training work: each split's arrays hold
 * its images and labels and every label is a class, images of one size in both splits and none
 * of size zero, at least one image of every class in each split (and enough training images of
 * each class for the balanced dev set), and a fingerprint of a split that a checkpoint records so
 * a resumed run can tell it is reading the same data.
 */
import { firstBadLabel } from "../labels.ts";
import { imageBytes, type ImageDataset } from "./dataset.ts";
import { DataError } from "./errors.ts";
import { sha256Hex } from "./download.ts";

/** Where each split came from, for messages: file paths, or e.g. "data.train (in memory)". */
export interface SplitNames {
  /** The training split's files. */
  train: string;
  /** The test split's files. */
  test: string;
}

function shape(d: ImageDataset): string {
  return `${d.channels}x${d.height}x${d.width}`;
}

const SPLIT_HINT = "give the split consistent fields: count images of channels x height x " +
  "width bytes each, one label per image, each a class index below numClasses";

/**
 * Throws a {@linkcode DataError} naming the split (`name`: its file, or where it came from) when
 * its fields disagree with its arrays or a label is not a class in `[0, numClasses)`: the
 * readers guarantee both for files, a split given in memory is checked here, on the host, before
 * any GPU work (a label >= C would make the loss and metric kernels read past a row of logits).
 * The error names the first bad label's index and value.
 */
export function checkSplitContents(d: ImageDataset, name: string): void {
  const bad = (what: string, hint = SPLIT_HINT) => {
    throw new DataError(`${name}: ${what}`, { file: name, hint });
  };
  for (const key of ["count", "channels", "height", "width"] as const) {
    if (!Number.isInteger(d[key]) || d[key] < 0) {
      bad(`${key} is ${d[key]}, expected an integer >= 0`);
    }
  }
  if (!Number.isInteger(d.numClasses) || d.numClasses < 1) {
    bad(`numClasses is ${d.numClasses}, expected an integer >= 1`);
  }
  if (d.images.length !== d.count * imageBytes(d)) {
    bad(
      `images holds ${d.images.length} bytes, expected ${d.count * imageBytes(d)} ` +
        `(${d.count} images of ${shape(d)})`,
    );
  }
  if (d.labels.length !== d.count) {
    bad(`labels holds ${d.labels.length} labels for ${d.count} images`);
  }
  const i = firstBadLabel(d.labels, d.numClasses, d.count);
  if (i >= 0) {
    bad(
      `label ${d.labels[i]} at index ${i} is out of range: the classes are [0, ${d.numClasses})`,
      `every label must be a class index in [0, ${d.numClasses}): correct the label, or give ` +
        "the split the numClasses its labels need",
    );
  }
}

/**
 * Throws a {@linkcode DataError} naming the files when a split is empty, has images of size
 * zero, or the two splits' images differ in size, channels or number of classes. (Splits read
 * from files had their labels checked by their readers; splits given in memory are checked by
 * {@linkcode checkSplitContents} first.)
 */
export function checkSplitsAgree(train: ImageDataset, test: ImageDataset, names: SplitNames): void {
  for (const [d, name] of [[train, names.train], [test, names.test]] as const) {
    if (d.count === 0) {
      throw new DataError(`${name}: the ${d.split} split holds no images`, {
        file: name,
        hint: "check that the file is complete, or point --data-dir at another copy",
      });
    }
    if (imageBytes(d) === 0) {
      throw new DataError(
        `${name}: images of size ${shape(d)} (zero pixels); expected images of at least 1x1`,
        { file: name, hint: "the file is damaged or not an image file; replace it" },
      );
    }
  }
  if (shape(train) !== shape(test)) {
    throw new DataError(
      `${names.test}: test images are ${shape(test)} but the training images ` +
        `(${names.train}) are ${shape(train)}; both splits must have images of one size`,
      { file: names.test, hint: "use the test files of the same dataset as the training files" },
    );
  }
  if (train.numClasses !== test.numClasses) {
    throw new DataError(
      `${names.test}: ${test.numClasses} classes, but the training split has ${train.numClasses}`,
      {
        file: names.test,
        hint: "use the test split of the same dataset as the training split (both splits " +
          "need one numClasses)",
      },
    );
  }
}

/**
 * Throws a {@linkcode DataError} naming the file when a class has no test image, or fewer
 * training images than `devPerClass + 1` (the balanced dev set takes `devPerClass` of each
 * class before the long-tailed subsampling; at least one must remain to train on).
 */
export function checkClassCounts(
  train: ImageDataset,
  test: ImageDataset,
  devPerClass: number,
  names: SplitNames,
): void {
  const count = (d: ImageDataset) => {
    const n = new Array<number>(d.numClasses).fill(0);
    for (let i = 0; i < d.count; i++) n[d.labels[i]]++;
    return n;
  };
  const trainCounts = count(train);
  const short = trainCounts.findIndex((n) => n < devPerClass + 1);
  if (short >= 0) {
    throw new DataError(
      `${names.train}: class ${short} has ${trainCounts[short]} training images; every class ` +
        `needs at least ${devPerClass + 1} (${devPerClass} for the balanced dev set, ` +
        `--dev-per-class, and one to train on)`,
      {
        file: names.train,
        hint: trainCounts[short] > 1
          ? `lower --dev-per-class to ${
            trainCounts[short] - 1
          } or less, or add images of class ${short}`
          : `add images of class ${short}, or use a dataset where every class is present`,
      },
    );
  }
  const testCounts = count(test);
  const empty = testCounts.findIndex((n) => n === 0);
  if (empty >= 0) {
    throw new DataError(
      `${names.test}: class ${empty} has no test images; every class needs at least one to ` +
        `measure its accuracy`,
      { file: names.test, hint: `add test images of class ${empty}` },
    );
  }
}

/**
 * SHA-256 (hex) of a split: its shape, class count and every image and label byte. Two
 * splits with the same fingerprint hold the same images in the same order.
 */
export async function splitFingerprint(d: ImageDataset): Promise<string> {
  const head = new TextEncoder().encode(
    `tailgrad-split/1 ${d.count} ${d.channels} ${d.height} ${d.width} ${d.numClasses}\n`,
  );
  const all = new Uint8Array(head.length + d.images.length + d.labels.length);
  all.set(head);
  all.set(d.images, head.length);
  all.set(d.labels, head.length + d.images.length);
  return await sha256Hex(all);
}
