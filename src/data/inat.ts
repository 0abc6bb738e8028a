/**
 * iNaturalist 2017 / 2018 annotations (COCO-style JSON: `images` with `id` and `file_name`,
 * `annotations` with `image_id` and `category_id`, `categories` with `id`), as an
 * {@linkcode ImageList}. Category ids map to dense labels in ascending id order; the validation
 * file must use the training file's map ({@linkcode InatOptions.categories}), so labels agree.
 *
 * Checked before use, each failure a {@linkcode DataError} naming the file and the entry:
 * missing or mistyped fields, duplicate image ids, annotations of unknown images or unknown
 * categories, images without an annotation or with more than one.
 */
import { damagedFile, DataError, unreadableFile } from "./errors.ts";
import type { ImageList } from "./lists.ts";

/** Category ids and names in dense-label order. */
export interface CategoryMap {
  /** Category id of each dense label. */
  ids: number[];
  /** Category name of each dense label ("" when the file gives none). */
  names: string[];
}

/** Options of {@linkcode readInat}. */
export interface InatOptions {
  /** The training file's categories; default: this file's own `categories`. */
  categories?: CategoryMap;
}

/** An iNaturalist split: the list plus its category map and image ids. */
export interface InatList extends ImageList {
  /** The category map the labels follow. */
  categories: CategoryMap;
  /** The `id` of each image, in list order. */
  imageIds: number[];
}

/** Reads an iNaturalist annotation file; image paths are relative to `root`. */
export async function readInat(
  file: string,
  root: string,
  options: InatOptions = {},
): Promise<InatList> {
  let text: string;
  try {
    text = await Deno.readTextFile(file);
  } catch (e) {
    throw unreadableFile(file, e, {
      what: "annotation file",
      hint: "check the path of the annotation file",
    });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new DataError(`${file} is not valid JSON: ${(e as Error).message}`, {
      file,
      cause: e,
      hint: "the file is damaged or truncated: download the iNaturalist annotation file again",
    });
  }
  return parseInat(json, file, root, options);
}

/** What to do about an annotation file of the wrong shape. */
const INAT_HINT = "use the official iNaturalist 2017/2018 annotation JSON (images, annotations " +
  'and categories; README: "Laying out the datasets"), or correct the entry';

type Row = Record<string, unknown>;

/** An array field of the top-level object, each entry an object. */
function rows(json: Row, key: string, file: string): Row[] {
  const v = json[key];
  if (!Array.isArray(v)) {
    throw damagedFile(file, `missing the "${key}" array of an iNaturalist file`, INAT_HINT);
  }
  v.forEach((r, i) => {
    if (typeof r !== "object" || r === null || Array.isArray(r)) {
      throw damagedFile(file, `${key}[${i}] is not an object`, INAT_HINT);
    }
  });
  return v as Row[];
}

/** A required integer (or string) field of entry `key[i]`. */
function field<T extends "integer" | "string">(
  r: Row,
  name: string,
  type: T,
  at: string,
  file: string,
): T extends "integer" ? number : string {
  const v = r[name];
  const ok = type === "integer" ? Number.isInteger(v) : typeof v === "string" && v !== "";
  if (!ok) {
    const got = v === undefined ? "it is missing" : `got ${JSON.stringify(v)}`;
    const want = type === "integer" ? "an integer" : "a non-empty string";
    throw damagedFile(file, `${at} needs "${name}" as ${want}; ${got}`, INAT_HINT);
  }
  return v as T extends "integer" ? number : string;
}

/** The dense category map of a file's `categories` (ascending ids). */
export function categoryMap(json: Record<string, unknown>, file: string): CategoryMap {
  const cats = rows(json, "categories", file).map((c, i) => ({
    id: field(c, "id", "integer", `categories[${i}]`, file),
    name: typeof c.name === "string" ? c.name : "",
  }));
  if (cats.length === 0) throw damagedFile(file, `"categories" is empty`, INAT_HINT);
  cats.sort((a, b) => a.id - b.id);
  cats.forEach((c, i) => {
    if (i > 0 && cats[i - 1].id === c.id) {
      throw damagedFile(file, `category id ${c.id} appears twice in "categories"`, INAT_HINT);
    }
  });
  return { ids: cats.map((c) => c.id), names: cats.map((c) => c.name) };
}

/** Validates parsed annotation JSON (see the module doc) into a list. */
export function parseInat(
  json: unknown,
  file: string,
  root: string,
  options: InatOptions = {},
): InatList {
  if (typeof json !== "object" || json === null || Array.isArray(json)) {
    throw damagedFile(
      file,
      `expected a JSON object with images, annotations and categories`,
      INAT_HINT,
    );
  }
  const obj = json as Row;
  const categories = options.categories ?? categoryMap(obj, file);
  const labelOf = new Map(categories.ids.map((id, label) => [id, label]));
  const images = rows(obj, "images", file);
  const indexOf = new Map<number, number>();
  const paths = images.map((r, i) => {
    const id = field(r, "id", "integer", `images[${i}]`, file);
    if (indexOf.has(id)) {
      throw damagedFile(file, `images[${i}] repeats image id ${id}`, INAT_HINT);
    }
    indexOf.set(id, i);
    return field(r, "file_name", "string", `images[${i}]`, file);
  });
  const labels = new Int32Array(images.length).fill(-1);
  rows(obj, "annotations", file).forEach((a, i) => {
    const at = `annotations[${i}]`;
    const imageId = field(a, "image_id", "integer", at, file);
    const categoryId = field(a, "category_id", "integer", at, file);
    const k = indexOf.get(imageId);
    if (k === undefined) {
      throw damagedFile(file, `${at} refers to image id ${imageId}, not in "images"`, INAT_HINT);
    }
    const label = labelOf.get(categoryId);
    if (label === undefined) {
      throw damagedFile(
        file,
        `${at} has category id ${categoryId}, not among the ${categories.ids.length} ` +
          `categories${options.categories ? " of the training file" : ""}`,
        options.categories
          ? "use the validation file of the same iNaturalist year as the training file"
          : INAT_HINT,
      );
    }
    if (labels[k] >= 0) {
      throw damagedFile(
        file,
        `image id ${imageId} has more than one annotation (${at})`,
        INAT_HINT,
      );
    }
    labels[k] = label;
  });
  const missing = labels.indexOf(-1);
  if (missing >= 0) {
    throw damagedFile(
      file,
      `images[${missing}] (id ${images[missing].id}, ${paths[missing]}) has no ` +
        "annotation; unlabelled (test) files cannot be used for training or evaluation",
      "use the challenge's train or val file (its test file has no annotations), or " +
        "annotate the image",
    );
  }
  if (paths.length === 0) throw damagedFile(file, `"images" is empty`, INAT_HINT);
  return {
    source: file,
    root,
    paths,
    labels,
    numClasses: categories.ids.length,
    where: (i) => `${file}: images[${i}]`,
    categories,
    imageIds: images.map((r) => r.id as number),
  };
}
