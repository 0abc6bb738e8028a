/**
 * Tape-based autograd with forward-mode (JVP) replay.
 *
 * Every op that touches a tensor requiring grad appends one record: its inputs, its output,
 * and two closures over whatever it saved (backward = vector-Jacobian product, jvp =
 * Jacobian-vector product). The tape is written in execution order, which is a topological
 * order, so backward walks it in reverse (micrograd's idea) and JVP walks it forwards.
 *
 * The tape keeps every forward tensor until {@linkcode Ctx.release}, so one forward serves a
 * backward, a JVP along any direction, and a second backward with a different seed: exactly
 * what the meta step needs (README, The meta step).
 */
import type { Gpu } from "../gpu/runtime.ts";
import { Tensor } from "../tensor.ts";
import { accumulateInto, zero } from "../ops/map.ts";

/** One op on the tape. */
export interface OpRecord {
  /** Op name, for debugging and error messages. */
  op: string;
  /** Input tensors, in the order `backward` and `jvp` use. */
  inputs: Tensor[];
  /** The op's output tensor. */
  output: Tensor;
  /**
   * Gradients for each input given the output's gradient (null where not needed). `into[i]`,
   * when given, is a destination the op may write input i's gradient into (overwriting it) and
   * return instead of a fresh tensor: a parameter's gradient then lands in the flat gradient
   * buffer directly. Ops that ignore it return fresh tensors, which the tape copies there.
   */
  backward(gradOut: Tensor, needsGrad: boolean[], into?: (Tensor | null)[]): (Tensor | null)[];
  /** The output's tangent given the inputs' tangents (null = zero); null if zero. */
  jvp(tangents: (Tensor | null)[]): Tensor | null;
}

/** Execution context of ops: the GPU, and the tape when gradients are recorded. */
export class Ctx {
  /** The GPU ops run on. */
  readonly gpu: Gpu;
  /** The tape ops record onto, or null when not recording. */
  readonly tape: Tape | null;
  /** Tensors this context allocated, released together by {@linkcode Ctx.release}. */
  #owned: Tensor[] = [];

  /** A context on `gpu`; pass a tape to record ops, null to record nothing. */
  constructor(gpu: Gpu, tape: Tape | null) {
    this.gpu = gpu;
    this.tape = tape;
  }

  /** A pooled tensor owned by this context. */
  empty(shape: readonly number[], dtype: "f32" | "u32" = "f32"): Tensor {
    const t = Tensor.empty(this.gpu, shape, dtype);
    this.#owned.push(t);
    return t;
  }

  /** Records an op if any input requires grad; marks the output accordingly. */
  record(rec: OpRecord): void {
    if (!this.tape) return;
    if (!rec.inputs.some((t) => t.requiresGrad)) return;
    rec.output.requiresGrad = true;
    this.tape.records.push(rec);
  }

  /** Whether an op should save what its backward/JVP needs. */
  get recording(): boolean {
    return this.tape !== null;
  }

  /** Returns every tensor this context allocated to the pool, except `keep`. */
  release(keep: Tensor[] = []): void {
    const kept = new Set(keep);
    const still: Tensor[] = [];
    for (const t of this.#owned) {
      if (kept.has(t)) still.push(t);
      else t.release(this.gpu);
    }
    this.#owned = still;
    if (this.tape) this.tape.records.length = 0;
  }
}

/** The list of op records of one forward pass. */
export class Tape {
  /** Op records in execution order. */
  readonly records: OpRecord[] = [];

  /**
   * Reverse-mode pass: propagates `seed` (the gradient of `root`) back through the tape and
   * returns the gradients of `wrt` (zero-filled when a tensor got no gradient). With `into`
   * (one tensor per `wrt` entry, e.g. the views of a flat gradient buffer), the gradient of
   * `wrt[k]` is written into `into[k]` (its first contribution set there, later ones added, in
   * the same order as without it) and the returned map holds those tensors. Gradient tensors of
   * intermediate values are released as soon as they are consumed. Its dispatches run in the
   * runtime phase "backward" (see `Gpu.inPhase`).
   *
   * Ownership of the returned tensors: without `into`, each gradient is a tensor of the pool
   * that now belongs to the caller, who releases it (`g.release(gpu)`) when done with it; the
   * context does not track it (`ctx.release()` leaves it alone), and neither does the tape
   * (a second backward returns new ones). With `into`, the map holds the caller's `into`
   * tensors themselves: nothing new to release. When `wrt` holds `root` without `into`, its
   * gradient may be `seed` itself: release the returned tensors that are not `seed`. `seed`
   * stays the caller's and is never written into. The tape keeps its records for further
   * passes until `ctx.release()`.
   */
  backward(
    gpu: Gpu,
    root: Tensor,
    seed: Tensor,
    wrt: Tensor[],
    into?: Tensor[],
  ): Map<Tensor, Tensor> {
    if (into && into.length !== wrt.length) {
      throw new Error(`backward: ${into.length} destinations for ${wrt.length} tensors`);
    }
    const dest = new Map<Tensor, Tensor>(into ? wrt.map((t, k) => [t, into[k]]) : []);
    return gpu.inPhase("backward", () => this.#backward(gpu, [root, seed], wrt, dest));
  }

  /** The pass from `root` with gradient `seed`; `dest`: destinations by tensor. */
  #backward(
    gpu: Gpu,
    [root, seed]: [Tensor, Tensor],
    wrt: Tensor[],
    dest: Map<Tensor, Tensor>,
  ): Map<Tensor, Tensor> {
    const grads = new Map<Tensor, Tensor>();
    const owned = new Set<Tensor>(); // gradient tensors we allocated (seed is the caller's)
    const writable = new Set<Tensor>(); // owned gradients and destinations: may accumulate
    grads.set(root, seed);
    const wanted = new Set(wrt);
    for (let r = this.records.length - 1; r >= 0; r--) {
      const rec = this.records[r];
      const gOut = grads.get(rec.output);
      if (!gOut) continue;
      const needs = rec.inputs.map((t) => t.requiresGrad);
      const gIns = rec.backward(gOut, needs, offers(rec.inputs, dest, grads));
      if (!wanted.has(rec.output)) {
        grads.delete(rec.output);
        if (owned.has(gOut)) {
          gOut.release(gpu);
          owned.delete(gOut);
          writable.delete(gOut);
        }
      }
      rec.inputs.forEach((input, i) => {
        const g = gIns[i];
        if (!g || !input.requiresGrad) {
          if (g && g !== dest.get(input)) g.release(gpu);
          return;
        }
        const prev = grads.get(input);
        const d = dest.get(input);
        if (prev && writable.has(prev)) {
          accumulateInto(gpu, prev, g);
          g.release(gpu);
        } else if (prev) {
          // the previous gradient is the caller's seed: do not write into it
          const sum = d ?? Tensor.empty(gpu, prev.shape);
          gpu.copy(prev.view, sum.view, prev.size * 4);
          accumulateInto(gpu, sum, g);
          g.release(gpu);
          grads.set(input, sum);
          if (!d) owned.add(sum);
          writable.add(sum);
        } else if (d) {
          if (g !== d) {
            gpu.copy(g.view, d.view, g.size * 4);
            g.release(gpu);
          }
          grads.set(input, d);
          writable.add(d);
        } else {
          grads.set(input, g);
          owned.add(g);
          writable.add(g);
        }
      });
    }
    const out = new Map<Tensor, Tensor>();
    for (const t of wrt) {
      let g = grads.get(t);
      const d = dest.get(t);
      if (!g) {
        g = d ?? Tensor.empty(gpu, t.shape);
        zero(gpu, g);
      } else if (d && g !== d) {
        gpu.copy(g.view, d.view, g.size * 4); // the root itself, whose gradient is the seed
        if (owned.has(g)) g.release(gpu);
        g = d;
      }
      out.set(t, g);
      grads.delete(t);
    }
    for (const g of grads.values()) if (owned.has(g)) g.release(gpu);
    return out;
  }

  /**
   * Forward-mode pass: given tangents of some leaves (e.g. every parameter), returns the
   * tangent of `output` (a new pooled tensor the caller releases), or null if it is zero.
   * Its dispatches run in the runtime phase "jvp".
   */
  jvp(gpu: Gpu, tangents: Map<Tensor, Tensor>, output: Tensor): Tensor | null {
    return gpu.inPhase("jvp", () => this.#jvp(gpu, tangents, output));
  }

  #jvp(gpu: Gpu, tangents: Map<Tensor, Tensor>, output: Tensor): Tensor | null {
    const tan = new Map<Tensor, Tensor>(tangents);
    const created: Tensor[] = [];
    for (const rec of this.records) {
      const tIn = rec.inputs.map((t) => tan.get(t) ?? null);
      if (tIn.every((t) => t === null)) continue;
      const tOut = rec.jvp(tIn);
      if (tOut) {
        tan.set(rec.output, tOut);
        created.push(tOut);
      }
    }
    const result = tan.get(output) ?? null;
    for (const t of created) if (t !== result) t.release(gpu);
    return result;
  }
}

/**
 * The destinations offered to a record's backward: each input's own destination while it has
 * no gradient yet (a later contribution is added, so it must not overwrite), once per record.
 */
function offers(
  inputs: Tensor[],
  dest: Map<Tensor, Tensor>,
  grads: Map<Tensor, Tensor>,
): (Tensor | null)[] | undefined {
  if (dest.size === 0) return undefined;
  const seen = new Set<Tensor>();
  return inputs.map((t) => {
    const d = dest.get(t);
    if (!d || grads.has(t) || seen.has(t)) return null;
    seen.add(t);
    return d;
  });
}
