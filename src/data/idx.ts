/**
 * Reader for the IDX format of MNIST and Fashion-MNIST, raw or gzip (detected from bytes).
 *
 * An IDX file is a big-endian header `00 00 <type> <ndims>`, then `ndims` u32 dimensions, then
 * the data. Only unsigned-byte data (type 0x08) is supported: images are magic 0x00000803
 * (`N x rows x cols`), labels 0x00000801 (`N`).
 */
import { firstBadLabel } from "../labels.ts";
import { DAMAGED_FILE_HINT, damagedFile, DataError, refetchHint } from "./errors.ts";
import { maybeGunzip, readFileBytes } from "./gzip.ts";
import type { ImageDataset } from "./dataset.ts";

/** Magic number of an IDX file of unsigned bytes with 3 dimensions (images). */
export const IDX_IMAGES_MAGIC = 0x00000803;
/** Magic number of an IDX file of unsigned bytes with 1 dimension (labels). */
export const IDX_LABELS_MAGIC = 0x00000801;

/** A parsed IDX array of unsigned bytes. */
export interface IdxArray {
  /** The magic number, e.g. 0x803 for images. */
  magic: number;
  /** Dimension sizes from the header, outermost first. */
  dims: number[];
  /** `prod(dims)` bytes. */
  data: Uint8Array;
}

/** `0x00000803`: a magic number as IDX documentation writes it. */
function hex8(n: number): string {
  return `0x${n.toString(16).padStart(8, "0")}`;
}

/**
 * Parses decompressed IDX bytes. Throws {@linkcode DataError} naming `file` on a bad magic
 * number, unsupported type, truncated data, or trailing bytes, with a hint to replace the file.
 */
export function parseIdx(bytes: Uint8Array, file: string): IdxArray {
  if (bytes.length < 4) {
    throw damagedFile(
      file,
      `truncated IDX file: ${bytes.length} bytes, expected at least a 4-byte header`,
    );
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const magic = view.getUint32(0);
  const type = bytes[2], ndims = bytes[3];
  if (bytes[0] !== 0 || bytes[1] !== 0 || ndims === 0) {
    throw damagedFile(
      file,
      `not an IDX file: bad magic number ${hex8(magic)} (expected 0x00000801 for labels or ` +
        "0x00000803 for images)",
    );
  }
  if (type !== 0x08) {
    throw damagedFile(
      file,
      `unsupported IDX data type 0x${type.toString(16)} in magic number ${hex8(magic)} ` +
        "(only unsigned bytes, 0x08)",
    );
  }
  const headerBytes = 4 + 4 * ndims;
  if (bytes.length < headerBytes) {
    throw damagedFile(file, `truncated IDX header (${bytes.length} bytes, need ${headerBytes})`);
  }
  const dims: number[] = [];
  let total = 1;
  for (let i = 0; i < ndims; i++) {
    const d = view.getUint32(4 + 4 * i);
    dims.push(d);
    total *= d;
  }
  const have = bytes.length - headerBytes;
  if (have < total) {
    throw damagedFile(
      file,
      `truncated IDX data: dims [${dims.join(", ")}] need ${total} bytes, file has ${have}`,
    );
  }
  if (have > total) {
    throw damagedFile(
      file,
      `${have - total} unexpected trailing bytes after IDX data of dims [${dims.join(", ")}] ` +
        `(${total} bytes expected)`,
    );
  }
  return { magic, dims, data: bytes.subarray(headerBytes) };
}

/** Reads and parses an IDX file (gzip or raw). */
export async function readIdxFile(path: string): Promise<IdxArray> {
  const raw = await readFileBytes(path);
  return parseIdx(await maybeGunzip(raw, path), path);
}

function expectMagic(a: IdxArray, magic: number, what: string, file: string): void {
  if (a.magic !== magic) {
    const other = a.magic === IDX_LABELS_MAGIC
      ? " (a labels file's)"
      : a.magic === IDX_IMAGES_MAGIC
      ? " (an images file's)"
      : "";
    throw damagedFile(
      file,
      `wrong magic number ${hex8(a.magic)}${other} for ${what} (expected ${hex8(magic)})`,
      "the file is misnamed or damaged: give each file its dataset's name (e.g. " +
        `train-images-idx3-ubyte for images), or ${DAMAGED_FILE_HINT}`,
    );
  }
}

/** Reads an IDX images file (magic 0x803): `N x rows x cols` bytes. */
export async function readIdxImages(
  path: string,
): Promise<{ count: number; height: number; width: number; data: Uint8Array }> {
  const a = await readIdxFile(path);
  expectMagic(a, IDX_IMAGES_MAGIC, "an images file", path);
  return { count: a.dims[0], height: a.dims[1], width: a.dims[2], data: a.data };
}

/**
 * Reads an IDX labels file (magic 0x801); with `numClasses`, every label must be below it.
 */
export async function readIdxLabels(path: string, numClasses?: number): Promise<Uint8Array> {
  const a = await readIdxFile(path);
  expectMagic(a, IDX_LABELS_MAGIC, "a labels file", path);
  if (numClasses !== undefined) checkLabels(a.data, numClasses, path);
  return a.data;
}

/** Throws a {@linkcode DataError} naming `file` if any label is `>= numClasses`. */
export function checkLabels(labels: Uint8Array, numClasses: number, file: string): void {
  const i = firstBadLabel(labels, numClasses);
  if (i < 0) return;
  throw damagedFile(
    file,
    `label ${labels[i]} at index ${i} is out of range [0, ${numClasses}) (the dataset has ` +
      `${numClasses} classes)`,
  );
}

/** Options for {@linkcode loadIdxDataset}. */
export interface IdxDatasetOptions {
  /** Dataset name recorded in the result, e.g. "fashion-mnist". */
  name: string;
  /** Which split the files hold. */
  split: "train" | "test";
  /** Labels must lie in `[0, numClasses)`; default 10. */
  numClasses?: number;
}

/**
 * Reads an images file and a labels file into an {@linkcode ImageDataset} (1 channel).
 * Their counts must agree.
 */
export async function loadIdxDataset(
  imagesPath: string,
  labelsPath: string,
  options: IdxDatasetOptions,
): Promise<ImageDataset> {
  const numClasses = options.numClasses ?? 10;
  const [images, labels] = await Promise.all([
    readIdxImages(imagesPath),
    readIdxLabels(labelsPath, numClasses),
  ]);
  if (images.count !== labels.length) {
    throw new DataError(
      `${imagesPath}: has ${images.count} images but ${labelsPath} has ${labels.length} ` +
        `labels; the counts must agree`,
      {
        file: imagesPath,
        hint: "the two files belong to different splits or datasets: replace them with the " +
          `matching pair: ${refetchHint("both files")}`,
      },
    );
  }
  return {
    name: options.name,
    split: options.split,
    count: images.count,
    channels: 1,
    height: images.height,
    width: images.width,
    numClasses,
    images: images.data,
    labels,
  };
}
