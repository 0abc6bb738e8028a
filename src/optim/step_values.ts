/**
 * Per-step optimizer values (learning rate, bias corrections) in a small storage buffer that
 * the host rewrites only when they change. A uniform holding them would be a new cached
 * uniform buffer for every distinct learning rate; this buffer is allocated once, so a
 * schedule that changes the rate every step creates no GPU objects.
 */
import type { BufferView, Gpu } from "../gpu/runtime.ts";

/** A few f32 (or u32) values read by a kernel, rewritten between steps. */
export class StepValues {
  readonly #gpu: Gpu;
  readonly #buffer: GPUBuffer;
  readonly #host: Float32Array<ArrayBuffer> | Uint32Array<ArrayBuffer>;
  /** `gpu.stats.submits` when a dispatch last bound the buffer (-1: never). */
  #boundAt = -1;
  #written = false;

  /** Allocates room for `count` values of `type` (default f32). */
  constructor(gpu: Gpu, count: number, type: "f32" | "u32" = "f32") {
    this.#gpu = gpu;
    this.#host = type === "u32" ? new Uint32Array(count) : new Float32Array(count);
    // Its own buffer, not one from the pool: a pooled buffer may still be bound by recorded,
    // unsubmitted work, which the first queue write would then overtake.
    this.#buffer = gpu.createStorage(Math.max(16, count * 4), "step values");
  }

  /**
   * Holds `values` (rounded to f32, or modulo 2^32 for u32) for the next dispatch and returns
   * the binding. Writes only when a value changed; work recorded but not yet submitted that
   * still binds the old values is submitted first (a queue write lands before the next submit, so that work would see the
   * new values otherwise).
   */
  set(values: readonly number[]): BufferView {
    const next = this.#host instanceof Uint32Array
      ? Uint32Array.from(values)
      : Float32Array.from(values);
    if (next.length !== this.#host.length) {
      throw new Error(`StepValues: ${next.length} values for ${this.#host.length} slots`);
    }
    const same = this.#written && next.every((v, i) => Object.is(v, this.#host[i]));
    if (!same) {
      if (this.#boundAt === this.#gpu.stats.submits) this.#gpu.submit();
      this.#host.set(next);
      this.#gpu.device.queue.writeBuffer(this.#buffer, 0, this.#host);
      this.#written = true;
    }
    this.#boundAt = this.#gpu.stats.submits;
    return { buffer: this.#buffer, offset: 0, size: this.#host.length * 4 };
  }

  /** Frees the buffer (after submitting recorded work, which may still bind it). */
  destroy(): void {
    this.#gpu.destroy(this.#buffer);
  }
}
