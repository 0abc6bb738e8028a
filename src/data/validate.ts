/**
 * Checks across the splits of a dataset, run before any training work: images of one size in
 * both splits and none of size zero, at least one image of every class in each split (and
 * enough training images of each class for the balanced dev set), and a fingerprint of a split
 * that a checkpoint records so a resumed run can tell it is reading the same data.
 */
import { imageBytes, type ImageDataset } from "./dataset.ts";
import { DataError } from "./errors.ts";
import { sha256Hex } from "./download.ts";

/** Where each split came from, for messages: file paths, or e.g. "training data (memory)". */
export interface SplitNames {
  /** The training split's files. */
  train: string;
  /** The test split's files. */
  test: string;
}

function shape(d: ImageDataset): string {
  return `${d.channels}x${d.height}x${d.width}`;
}

/**
 * Throws a {@linkcode DataError} naming the files when a split is empty, has images of size
 * zero, or the two splits' images differ in size, channels or number of classes.
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
      { file: names.test },
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
