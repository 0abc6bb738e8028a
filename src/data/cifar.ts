/**
 * Readers for the CIFAR-10 and CIFAR-100 binary formats.
 *
 * CIFAR-10 (`data_batch_1.bin` .. `data_batch_5.bin`, `test_batch.bin`): records of one label
 * byte then 3072 pixel bytes (1024 red, 1024 green, 1024 blue, row-major 32x32).
 * CIFAR-100 (`train.bin`, `test.bin`): coarse label byte, fine label byte, 3072 pixel bytes;
 * the fine label (100 classes) is the label used.
 */
import { join } from "node:path";
import { damagedFile } from "./errors.ts";
import { maybeGunzip, readFileBytes } from "./gzip.ts";
import type { ImageDataset } from "./dataset.ts";

/** Which CIFAR variant. */
export type CifarVariant = "cifar10" | "cifar100";

/** Pixel bytes of one CIFAR image (3x32x32). */
export const CIFAR_IMAGE_BYTES = 3072;

/** Files of each split, in order. */
export const CIFAR_FILES: Record<CifarVariant, { train: string[]; test: string[] }> = {
  cifar10: {
    train: [1, 2, 3, 4, 5].map((i) => `data_batch_${i}.bin`),
    test: ["test_batch.bin"],
  },
  cifar100: { train: ["train.bin"], test: ["test.bin"] },
};

/** The folder the official archive unpacks into. */
export const CIFAR_ARCHIVE_DIR: Record<CifarVariant, string> = {
  cifar10: "cifar-10-batches-bin",
  cifar100: "cifar-100-binary",
};

/** Decoded records of one CIFAR binary file. */
export interface CifarRecords {
  /** Number of records (images) in the file. */
  count: number;
  /** `count * 3072` bytes, CHW per image. */
  images: Uint8Array;
  /** Labels (fine labels for CIFAR-100). */
  labels: Uint8Array;
  /** CIFAR-100 only: coarse (20-class) labels. */
  coarseLabels?: Uint8Array;
}

/**
 * Parses one CIFAR binary file (raw bytes; gzip is accepted too by
 * {@linkcode readCifarFile}). Throws a {@linkcode DataError} naming `file` on an empty or
 * truncated file or an out-of-range label, with a hint to replace the file.
 */
export function parseCifar(bytes: Uint8Array, file: string, variant: CifarVariant): CifarRecords {
  const labelBytes = variant === "cifar10" ? 1 : 2;
  const record = labelBytes + CIFAR_IMAGE_BYTES;
  const title = variant === "cifar10" ? "CIFAR-10" : "CIFAR-100";
  if (bytes.length === 0) {
    throw damagedFile(file, `empty file: expected ${title} records of ${record} bytes`);
  }
  if (bytes.length % record !== 0) {
    throw damagedFile(
      file,
      `truncated or not a ${title} binary file: ${bytes.length} bytes is not a multiple of ` +
        `the ${record}-byte record (${Math.floor(bytes.length / record)} whole records, ` +
        `${bytes.length % record} bytes left)`,
    );
  }
  const count = bytes.length / record;
  const images = new Uint8Array(count * CIFAR_IMAGE_BYTES);
  const labels = new Uint8Array(count);
  const coarse = variant === "cifar100" ? new Uint8Array(count) : undefined;
  const numClasses = variant === "cifar10" ? 10 : 100;
  for (let i = 0; i < count; i++) {
    const at = i * record;
    const label = bytes[at + labelBytes - 1];
    if (label >= numClasses) {
      throw damagedFile(
        file,
        `record ${i}: ${variant === "cifar100" ? "fine " : ""}label ${label} is out of range ` +
          `[0, ${numClasses}) (${title} has ${numClasses} classes)`,
      );
    }
    if (coarse) {
      const c = bytes[at];
      if (c >= 20) {
        throw damagedFile(
          file,
          `record ${i}: coarse label ${c} is out of range [0, 20) (CIFAR-100 has 20 coarse classes)`,
        );
      }
      coarse[i] = c;
    }
    labels[i] = label;
    images.set(bytes.subarray(at + labelBytes, at + record), i * CIFAR_IMAGE_BYTES);
  }
  return { count, images, labels, coarseLabels: coarse };
}

/** Reads and parses one CIFAR binary file (raw, or gzip detected from the bytes). */
export async function readCifarFile(path: string, variant: CifarVariant): Promise<CifarRecords> {
  const raw = await readFileBytes(path);
  return parseCifar(await maybeGunzip(raw, path), path, variant);
}

/**
 * Reads a CIFAR split from `dir` (which holds the `.bin` files directly) into an
 * {@linkcode ImageDataset} of 3x32x32 images.
 */
export async function loadCifarDataset(
  dir: string,
  variant: CifarVariant,
  split: "train" | "test",
): Promise<ImageDataset> {
  const parts: CifarRecords[] = [];
  for (const f of CIFAR_FILES[variant][split]) {
    parts.push(await readCifarFile(join(dir, f), variant));
  }
  const count = parts.reduce((s, p) => s + p.count, 0);
  const images = parts.length === 1 ? parts[0].images : new Uint8Array(count * CIFAR_IMAGE_BYTES);
  const labels = parts.length === 1 ? parts[0].labels : new Uint8Array(count);
  if (parts.length > 1) {
    let at = 0;
    for (const p of parts) {
      images.set(p.images, at * CIFAR_IMAGE_BYTES);
      labels.set(p.labels, at);
      at += p.count;
    }
  }
  return {
    name: variant,
    split,
    count,
    channels: 3,
    height: 32,
    width: 32,
    numClasses: variant === "cifar10" ? 10 : 100,
    images,
    labels,
  };
}
