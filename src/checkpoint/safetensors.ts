/**
 * A small reader and writer of the safetensors format (https://github.com/huggingface/safetensors):
 *
 *   [8 bytes: u64 little-endian N] [N bytes: UTF-8 JSON header] [raw little-endian tensor data]
 *
 * The header maps each tensor name to `{dtype, shape, data_offsets: [begin, end]}` (offsets
 * relative to the start of the data section) and may hold a `"__metadata__"` map of strings.
 * We write tensors back to back in the order given, with no gaps, and pad the header with
 * spaces to a multiple of 8 bytes, as the reference implementation does; the reader checks the
 * same invariants (contiguous, in bounds, sizes matching shapes) so a truncated or corrupt file
 * fails loudly instead of loading garbage.
 */
import { UserError } from "../errors.ts";

/** Element types this module reads and writes. */
export type SafeDType = "F32" | "F64" | "I32" | "U32" | "I64" | "U8";

/** Bytes per element of each dtype. */
export const DTYPE_BYTES: Record<SafeDType, number> = {
  F32: 4,
  F64: 8,
  I32: 4,
  U32: 4,
  I64: 8,
  U8: 1,
};

/** Typed-array data of a tensor, matching its dtype. */
export type SafeData =
  | Float32Array
  | Float64Array
  | Int32Array
  | Uint32Array
  | BigInt64Array
  | Uint8Array;

/** One named tensor. */
export interface SafeTensor {
  /** Element type; `data` must be the matching typed array. */
  dtype: SafeDType;
  /** Shape; `[]` is a scalar (one element). */
  shape: number[];
  /** Row-major elements; length equals the product of `shape`. */
  data: SafeData;
}

/** A decoded file: tensors in file order, and the string metadata. */
export interface SafetensorsFile {
  /** Tensors by name, in order of their data offsets. */
  tensors: Map<string, SafeTensor>;
  /** The header's `__metadata__` map (empty if absent). */
  metadata: Record<string, string>;
  /** The file it was read from, when read by `readCheckpoint` (named in errors). */
  path?: string;
}

/** Thrown for malformed files; the message says what is wrong. */
export class SafetensorsError extends UserError {
  /** Always "SafetensorsError". */
  override name = "SafetensorsError";
}

const ARRAY_OF: Record<SafeDType, { from(b: ArrayBuffer): SafeData }> = {
  F32: { from: (b) => new Float32Array(b) },
  F64: { from: (b) => new Float64Array(b) },
  I32: { from: (b) => new Int32Array(b) },
  U32: { from: (b) => new Uint32Array(b) },
  I64: { from: (b) => new BigInt64Array(b) },
  U8: { from: (b) => new Uint8Array(b) },
};

function numel(shape: readonly number[]): number {
  return shape.reduce((a, b) => a * b, 1);
}

function checkDtype(dtype: SafeDType, data: SafeData, name: string): void {
  const ok = (dtype === "F32" && data instanceof Float32Array) ||
    (dtype === "F64" && data instanceof Float64Array) ||
    (dtype === "I32" && data instanceof Int32Array) ||
    (dtype === "U32" && data instanceof Uint32Array) ||
    (dtype === "I64" && data instanceof BigInt64Array) ||
    (dtype === "U8" && data instanceof Uint8Array);
  if (!ok) throw new SafetensorsError(`${name}: data is not a ${dtype} typed array`);
}

/** A little-endian host? (Every platform Deno runs on is; checked once anyway.) */
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/**
 * Serialises tensors (in the given order) and string metadata into safetensors bytes.
 * Names must be unique and must not be `__metadata__`.
 */
export function encodeSafetensors(
  tensors: Iterable<[string, SafeTensor]> | Map<string, SafeTensor>,
  metadata: Record<string, string> = {},
): Uint8Array {
  if (!LITTLE_ENDIAN) throw new SafetensorsError("big-endian hosts are not supported");
  const entries = [...tensors];
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== "string") throw new SafetensorsError(`metadata ${k} must be a string`);
    }
    header.__metadata__ = metadata;
  }
  let offset = 0;
  for (const [name, t] of entries) {
    if (name === "__metadata__") throw new SafetensorsError("tensor name __metadata__ is reserved");
    if (name in header) throw new SafetensorsError(`duplicate tensor name ${name}`);
    checkDtype(t.dtype, t.data, name);
    if (t.shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new SafetensorsError(`${name}: bad shape [${t.shape}]`);
    }
    if (t.data.length !== numel(t.shape)) {
      throw new SafetensorsError(`${name}: ${t.data.length} values for shape [${t.shape}]`);
    }
    const bytes = t.data.byteLength;
    header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    offset += bytes;
  }
  let json = new TextEncoder().encode(JSON.stringify(header));
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) {
    const p = new Uint8Array(padded).fill(0x20);
    p.set(json);
    json = p;
  }
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const [, t] of entries) {
    out.set(new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength), at);
    at += t.data.byteLength;
  }
  return out;
}

/** Parses safetensors bytes; tensor data is copied out (aligned, independent of `bytes`). */
export function decodeSafetensors(bytes: Uint8Array): SafetensorsFile {
  if (!LITTLE_ENDIAN) throw new SafetensorsError("big-endian hosts are not supported");
  if (bytes.length < 8) throw new SafetensorsError(`file too short (${bytes.length} bytes)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = view.getBigUint64(0, true);
  if (n > BigInt(bytes.length - 8)) {
    throw new SafetensorsError(`header length ${n} exceeds the file (${bytes.length} bytes)`);
  }
  const headerLen = Number(n);
  let header: Record<string, unknown>;
  try {
    header = JSON.parse(new TextDecoder("utf-8", { fatal: true }).decode(
      bytes.subarray(8, 8 + headerLen),
    ));
  } catch (e) {
    throw new SafetensorsError(`bad JSON header: ${e instanceof Error ? e.message : e}`);
  }
  if (typeof header !== "object" || header === null || Array.isArray(header)) {
    throw new SafetensorsError("header is not a JSON object");
  }
  const dataStart = 8 + headerLen;
  const dataLen = bytes.length - dataStart;
  const metadata: Record<string, string> = {};
  const raw = header.__metadata__;
  if (raw !== undefined) {
    if (typeof raw !== "object" || raw === null) {
      throw new SafetensorsError("__metadata__ is not an object");
    }
    for (const [k, v] of Object.entries(raw)) {
      if (typeof v !== "string") throw new SafetensorsError(`metadata ${k} is not a string`);
      metadata[k] = v;
    }
  }
  const list: { name: string; dtype: SafeDType; shape: number[]; begin: number; end: number }[] =
    [];
  for (const [name, info] of Object.entries(header)) {
    if (name === "__metadata__") continue;
    const i = info as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof i.dtype !== "string" || !(i.dtype in DTYPE_BYTES)) {
      throw new SafetensorsError(`${name}: unsupported dtype ${String(i.dtype)}`);
    }
    const dtype = i.dtype as SafeDType;
    if (!Array.isArray(i.shape) || i.shape.some((d) => !Number.isInteger(d) || d < 0)) {
      throw new SafetensorsError(`${name}: bad shape`);
    }
    const off = i.data_offsets;
    if (
      !Array.isArray(off) || off.length !== 2 || !Number.isInteger(off[0]) ||
      !Number.isInteger(off[1]) || off[0] < 0 || off[1] < off[0] || off[1] > dataLen
    ) {
      throw new SafetensorsError(`${name}: data_offsets out of bounds (data is ${dataLen} bytes)`);
    }
    const shape = i.shape as number[];
    if (off[1] - off[0] !== numel(shape) * DTYPE_BYTES[dtype]) {
      throw new SafetensorsError(
        `${name}: ${off[1] - off[0]} bytes for ${dtype} [${shape}]`,
      );
    }
    list.push({ name, dtype, shape, begin: off[0], end: off[1] });
  }
  const sorted = [...list].sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expect = 0;
  for (const t of sorted) {
    if (t.begin !== expect) {
      throw new SafetensorsError(`${t.name}: tensor data is not contiguous (gap or overlap)`);
    }
    expect = t.end;
  }
  if (expect !== dataLen) {
    throw new SafetensorsError(`data section is ${dataLen} bytes, tensors cover ${expect}`);
  }
  const tensors = new Map<string, SafeTensor>();
  for (const t of sorted) {
    const copy = bytes.slice(dataStart + t.begin, dataStart + t.end).buffer;
    tensors.set(t.name, { dtype: t.dtype, shape: t.shape, data: ARRAY_OF[t.dtype].from(copy) });
  }
  return { tensors, metadata };
}

/** A float32 tensor entry. */
export function f32(data: ArrayLike<number>, shape: number[] = [data.length]): SafeTensor {
  return { dtype: "F32", shape, data: Float32Array.from(data) };
}
