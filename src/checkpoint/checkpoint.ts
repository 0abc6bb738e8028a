/**
 * Training checkpoints as safetensors files whose names match PyTorch's `state_dict`:
 *
 * - model parameters and BN running statistics under their state_dict names
 *   (`conv1.weight`, `layer1.0.bn1.running_mean`, ...), plus `<bn>.num_batches_tracked` (I64
 *   scalar), so `model.load_state_dict(safetensors.torch.load_file(path), strict=False)` loads
 *   the model (strict=True too once the extra entries below are filtered out);
 * - the SGD momentum buffers as `optimizer.momentum.<name>`;
 * - any other training state under its own prefix (`train.`, `mwn.`);
 * - run metadata (epoch, RNG states, config, history) as JSON strings in `__metadata__`.
 *
 * Files are replaced atomically ({@linkcode writeFileAtomic}), so a run killed while saving
 * keeps its previous checkpoint.
 */
import type { ParamSpec } from "../nn/params.ts";
import { writeFileAtomic } from "./atomic.ts";
import {
  decodeSafetensors,
  encodeSafetensors,
  type SafeTensor,
  SafetensorsError,
  type SafetensorsFile,
} from "./safetensors.ts";
import { describeError } from "../errors.ts";

/** Prefix of optimizer momentum entries. */
export const MOMENTUM_PREFIX = "optimizer.momentum.";

/** Writes tensors and metadata to `path` atomically. */
export async function writeCheckpoint(
  path: string,
  tensors: Map<string, SafeTensor>,
  metadata: Record<string, string>,
): Promise<void> {
  await writeFileAtomic(path, encodeSafetensors(tensors, metadata));
}

/** Options of {@linkcode readCheckpoint}. */
export interface ReadCheckpointOptions {
  /**
   * What to do when the file cannot be read or is not a checkpoint, for the error's "to fix:"
   * line (a command line names its flags here); default: move it away or give another file.
   */
  hint?: string;
}

/**
 * Reads a checkpoint, or null when `path` does not exist. A file that cannot be read or is not
 * a valid safetensors file throws a {@linkcode SafetensorsError} naming it as a checkpoint, with
 * `options.hint` as what to do.
 */
export async function readCheckpoint(
  path: string,
  options: ReadCheckpointOptions = {},
): Promise<SafetensorsFile | null> {
  const hint = options.hint ?? "move the file away, or give the path of another checkpoint";
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return null;
    if (e instanceof Deno.errors.IsADirectory) {
      // a run's folder given where its checkpoint is meant: name the file inside, if any
      const inside = `${path.replace(/\/+$/, "")}/checkpoint.safetensors`;
      const has = await Deno.stat(inside).then((s) => s.isFile, () => false);
      throw new SafetensorsError(`checkpoint ${path} is a folder; expected a checkpoint file`, {
        file: path,
        hint: has ? `give the checkpoint inside it, ${inside}` : hint,
        cause: e,
      });
    }
    throw new SafetensorsError(`checkpoint ${path}: cannot be read (${describeError(e)})`, {
      file: path,
      hint,
      cause: e,
    });
  }
  try {
    return { ...decodeSafetensors(bytes), path };
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw e;
    throw new SafetensorsError(
      `checkpoint ${path} is not a valid safetensors file: ${e.message}`,
      { file: path, hint: `the file is damaged or is not a checkpoint; ${hint}`, cause: e },
    );
  }
}

/**
 * Adds model entries (PyTorch names and shapes) to `into`: parameters, buffers, and one
 * `num_batches_tracked` per BN layer.
 */
export function addModelState(
  into: Map<string, SafeTensor>,
  specs: { params: ParamSpec[]; buffers: ParamSpec[] },
  params: Map<string, Float32Array>,
  buffers: Map<string, Float32Array>,
  numBatchesTracked: number,
): void {
  for (const s of specs.params) into.set(s.name, entry(s, params));
  for (const s of specs.buffers) {
    into.set(s.name, entry(s, buffers));
    if (s.name.endsWith(".running_var")) {
      const prefix = s.name.slice(0, -".running_var".length);
      into.set(`${prefix}.num_batches_tracked`, {
        dtype: "I64",
        shape: [],
        data: new BigInt64Array([BigInt(numBatchesTracked)]),
      });
    }
  }
}

/** Adds `optimizer.momentum.<name>` entries. */
export function addMomentum(
  into: Map<string, SafeTensor>,
  specs: ParamSpec[],
  momentum: Map<string, Float32Array>,
): void {
  for (const s of specs) into.set(MOMENTUM_PREFIX + s.name, entry(s, momentum));
}

function entry(s: ParamSpec, values: Map<string, Float32Array>): SafeTensor {
  const v = values.get(s.name);
  if (!v) throw new Error(`checkpoint: no value for ${s.name}`);
  return { dtype: "F32", shape: [...s.shape], data: v };
}

/**
 * Reads F32 entries named `prefix + spec.name` for every spec, checking shapes; throws naming
 * the file (when known) and the first missing or mismatched entry.
 */
export function takeF32(
  file: SafetensorsFile,
  specs: ParamSpec[],
  prefix = "",
): Map<string, Float32Array> {
  const out = new Map<string, Float32Array>();
  const where = file.path ? `checkpoint ${file.path}` : "checkpoint";
  for (const s of specs) {
    const t = file.tensors.get(prefix + s.name);
    if (!t) throw new Error(`${where} lacks ${prefix + s.name}`);
    if (t.dtype !== "F32" || t.shape.join(",") !== s.shape.join(",")) {
      throw new Error(
        `${where} ${prefix + s.name}: ${t.dtype} [${t.shape}], expected F32 [${s.shape}]`,
      );
    }
    out.set(s.name, t.data as Float32Array);
  }
  return out;
}
