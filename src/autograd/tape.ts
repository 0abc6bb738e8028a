/**
 * Tape-based autograd with forward-mode (JVP) replay.
 *
 * Every op that touches a tensor requiring grad appends one record: its inputs, its output,
 * and two closures over whatever it saved (backward = vector-Jacobian product, jvp =
 * Jacobian-vector product). The tape is written in execution order, which is a topological
 * order, so backward walks it in reverse (micrograd's idea) and JVP walks it forwards.
 *
 * The tape keeps every forward tensor until {@linkcode Tape.release}, so one forward serves a
 * backward, a JVP along any direction, and a second backward with a different seed: exactly
 * what the meta step needs (DESIGN.md section 2).
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
  /** Gradients for each input given the output's gradient (null where not needed). */
  backward(gradOut: Tensor, needsGrad: boolean[]): (Tensor | null)[];
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
   * returns the gradients of `wrt` (zero-filled when a tensor got no gradient). Gradient
   * tensors of intermediate values are released as soon as they are consumed. Its dispatches
   * run in the runtime phase "backward" (see `Gpu.inPhase`).
   */
  backward(gpu: Gpu, root: Tensor, seed: Tensor, wrt: Tensor[]): Map<Tensor, Tensor> {
    return gpu.inPhase("backward", () => this.#backward(gpu, root, seed, wrt));
  }

  #backward(gpu: Gpu, root: Tensor, seed: Tensor, wrt: Tensor[]): Map<Tensor, Tensor> {
    const grads = new Map<Tensor, Tensor>();
    const owned = new Set<Tensor>(); // gradient tensors we allocated (seed is the caller's)
    grads.set(root, seed);
    const wanted = new Set(wrt);
    for (let r = this.records.length - 1; r >= 0; r--) {
      const rec = this.records[r];
      const gOut = grads.get(rec.output);
      if (!gOut) continue;
      const needs = rec.inputs.map((t) => t.requiresGrad);
      const gIns = rec.backward(gOut, needs);
      if (!wanted.has(rec.output)) {
        grads.delete(rec.output);
        if (owned.has(gOut)) {
          gOut.release(gpu);
          owned.delete(gOut);
        }
      }
      rec.inputs.forEach((input, i) => {
        const g = gIns[i];
        if (!g || !input.requiresGrad) {
          if (g) g.release(gpu);
          return;
        }
        const prev = grads.get(input);
        if (prev && owned.has(prev)) {
          accumulateInto(gpu, prev, g);
          g.release(gpu);
        } else if (prev) {
          // the previous gradient is the caller's seed: do not write into it
          const sum = Tensor.empty(gpu, prev.shape);
          gpu.copy(prev.view, sum.view, prev.size * 4);
          accumulateInto(gpu, sum, g);
          g.release(gpu);
          grads.set(input, sum);
          owned.add(sum);
        } else {
          grads.set(input, g);
          owned.add(g);
        }
      });
    }
    const out = new Map<Tensor, Tensor>();
    for (const t of wrt) {
      let g = grads.get(t);
      if (!g) {
        g = Tensor.empty(gpu, t.shape);
        zero(gpu, g);
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
