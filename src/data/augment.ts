/**
 * Data augmentation: per-image parameters drawn on the CPU from a seeded generator, applied on
 * the GPU by the kernel of `shaders/augment.ts` ({@linkcode GpuAugmenter}), with a CPU
 * reference of exactly the same computation ({@linkcode augmentCpu}) for tests.
 *
 * Train mode: reflect-pad by `pad` (PyTorch ReflectionPad2d), crop back to HxW at offset
 * (dx, dy) in [0, 2*pad], optionally flip horizontally, then normalise
 * `(x/255 - mean_c) / std_c`. Eval mode: normalise only.
 */
import type { BufferView, Gpu } from "../gpu/runtime.ts";
import { grid1d } from "../gpu/runtime.ts";
import { AUGMENT_WORKGROUP, augmentKernel } from "../../shaders/augment.ts";
import { Rng } from "../random.ts";

/** Image shape and normalisation of an augmentation pipeline. */
export interface AugmentConfig {
  /** Image channels; `mean` and `std` need this many entries. */
  channels: number;
  /** Image height in pixels. */
  height: number;
  /** Image width in pixels. */
  width: number;
  /** Per-channel mean of pixels scaled to [0, 1]. */
  mean: number[];
  /** Per-channel standard deviation of pixels scaled to [0, 1]. */
  std: number[];
  /** Reflect padding before the random crop; default 4. Must be < height and < width. */
  pad?: number;
}

/** Packs one image's parameters: crop offsets `dx, dy` in [0, 2*pad] and a flip bit. */
export function packAugmentParam(dx: number, dy: number, flip: boolean | number): number {
  return ((dx & 0xff) | ((dy & 0xff) << 8) | ((flip ? 1 : 0) << 16)) >>> 0;
}

/** Inverse of {@linkcode packAugmentParam}. */
export function unpackAugmentParam(p: number): { dx: number; dy: number; flip: boolean } {
  return { dx: p & 0xff, dy: (p >>> 8) & 0xff, flip: ((p >>> 16) & 1) === 1 };
}

/** Options for {@linkcode drawAugmentParams}. */
export interface DrawOptions {
  /** Padding (crop offsets are drawn in [0, 2*pad]); default 4. */
  pad?: number;
  /** Random crop; default true (false: centre crop, dx = dy = pad). */
  crop?: boolean;
  /** Random horizontal flip with probability 1/2; default true. */
  flip?: boolean;
}

/** Draws `count` packed per-image parameters from `rng` into `out` (allocated if omitted). */
export function drawAugmentParams(
  rng: Rng,
  count: number,
  options: DrawOptions = {},
  out: Uint32Array = new Uint32Array(count),
): Uint32Array {
  const pad = options.pad ?? 4;
  const crop = options.crop ?? true;
  const flip = options.flip ?? true;
  for (let i = 0; i < count; i++) {
    const dx = crop ? rng.nextInt(2 * pad + 1) : pad;
    const dy = crop ? rng.nextInt(2 * pad + 1) : pad;
    const f = flip ? (rng.nextU32() & 1) : 0;
    out[i] = packAugmentParam(dx, dy, f);
  }
  return out;
}

/**
 * Parameters for batch `step` of `epoch`, a pure function of `(seed, epoch, step)` so a
 * resumed run reproduces them.
 */
export function augmentParamsFor(
  seed: number,
  epoch: number,
  step: number,
  count: number,
  options: DrawOptions = {},
  out?: Uint32Array,
): Uint32Array {
  return drawAugmentParams(new Rng(seed, 0xa06, epoch, step), count, options, out);
}

/**
 * The per-channel lookup table `table[c*256 + v] = f32((v/255 - mean_c) / std_c)`, computed
 * in double precision and rounded once.
 */
export function normalisationTable(mean: number[], std: number[]): Float32Array {
  if (mean.length !== std.length) throw new RangeError("mean and std differ in length");
  const t = new Float32Array(mean.length * 256);
  for (let c = 0; c < mean.length; c++) {
    if (!(std[c] > 0)) throw new RangeError(`std[${c}] must be > 0, got ${std[c]}`);
    for (let v = 0; v < 256; v++) t[c * 256 + v] = (v / 255 - mean[c]) / std[c];
  }
  return t;
}

function reflectIndex(i: number, n: number): number {
  if (i < 0) i = -i;
  if (i >= n) i = 2 * (n - 1) - i;
  return i;
}

function checkConfig(cfg: AugmentConfig): number {
  const pad = cfg.pad ?? 4;
  if (cfg.mean.length !== cfg.channels || cfg.std.length !== cfg.channels) {
    throw new RangeError(`mean/std need ${cfg.channels} entries`);
  }
  if (!(pad >= 0 && pad < cfg.height && pad < cfg.width && 2 * pad <= 255)) {
    throw new RangeError(`pad ${pad} must be < height and width (reflect padding)`);
  }
  return pad;
}

/**
 * CPU reference: augments `count` images (uint8 NCHW in `pixels`) into float32 NCHW.
 * `params === null` is eval mode (normalise only).
 */
export function augmentCpu(
  pixels: Uint8Array,
  params: Uint32Array | null,
  count: number,
  cfg: AugmentConfig,
  out: Float32Array = new Float32Array(count * cfg.channels * cfg.height * cfg.width),
): Float32Array {
  const pad = checkConfig(cfg);
  const { channels: C, height: H, width: W } = cfg;
  const table = normalisationTable(cfg.mean, cfg.std);
  let o = 0;
  for (let n = 0; n < count; n++) {
    const p = params ? unpackAugmentParam(params[n]) : null;
    for (let c = 0; c < C; c++) {
      const base = (n * C + c) * H * W;
      for (let y = 0; y < H; y++) {
        for (let x = 0; x < W; x++) {
          let sx = x, sy = y;
          if (p) {
            if (p.flip) sx = W - 1 - sx;
            sx = reflectIndex(sx + p.dx - pad, W);
            sy = reflectIndex(sy + p.dy - pad, H);
          }
          out[o++] = table[c * 256 + pixels[base + sy * W + sx]];
        }
      }
    }
  }
  return out;
}

/** Options for {@linkcode GpuAugmenter}. */
export interface GpuAugmenterOptions extends AugmentConfig {
  /** Largest batch this augmenter will process. */
  maxBatch: number;
}

/**
 * Runs the augmentation kernel. Input buffers (pixels and params) are allocated once and
 * double-buffered, so while batch i is being processed batch i+1 can be written; a steady-state
 * call creates no GPU objects (its bind groups and uniform are cached by the runtime).
 *
 * Writes use `queue.writeBuffer`, which the queue executes before any command buffer submitted
 * later. Before overwriting a slot whose last dispatch is still only recorded (no submit since),
 * the augmenter submits, so recorded work always sees the data it was recorded with.
 */
export class GpuAugmenter {
  /** The GPU the kernel runs on. */
  readonly gpu: Gpu;
  /** Image channels. */
  readonly channels: number;
  /** Image height in pixels. */
  readonly height: number;
  /** Image width in pixels. */
  readonly width: number;
  /** Reflect padding of train mode, in pixels (options.pad, default 4). */
  readonly pad: number;
  /** Largest `count` accepted by {@linkcode GpuAugmenter.run}. */
  readonly maxBatch: number;
  #pixelBytes: number;
  #pixels: GPUBuffer[];
  #params: GPUBuffer[];
  #table: GPUBuffer;
  #tableBytes: number;
  #slot = 0;
  #recordedAt: (number | null)[] = [null, null];
  #tail = new Uint8Array(4);
  #disposed = false;

  /** Validates `options`, allocates the double-buffered inputs and builds the pipeline. */
  constructor(gpu: Gpu, options: GpuAugmenterOptions) {
    this.pad = checkConfig(options);
    if (!(options.maxBatch >= 1)) throw new RangeError("maxBatch must be >= 1");
    this.gpu = gpu;
    this.channels = options.channels;
    this.height = options.height;
    this.width = options.width;
    this.maxBatch = options.maxBatch;
    this.#pixelBytes = Math.ceil((options.maxBatch * this.imageBytes) / 4) * 4;
    this.#pixels = [gpu.alloc(this.#pixelBytes), gpu.alloc(this.#pixelBytes)];
    this.#params = [gpu.alloc(options.maxBatch * 4), gpu.alloc(options.maxBatch * 4)];
    const table = normalisationTable(options.mean, options.std);
    this.#tableBytes = table.byteLength;
    this.#table = gpu.alloc(table.byteLength);
    gpu.write({ buffer: this.#table, offset: 0, size: table.byteLength }, table);
    gpu.prepare(augmentKernel.program);
  }

  /** Bytes of one uint8 image. */
  get imageBytes(): number {
    return this.channels * this.height * this.width;
  }

  /** Bytes of float32 output for `count` images. */
  outputBytes(count: number): number {
    return count * this.imageBytes * 4;
  }

  /**
   * Uploads `count` images (uint8 NCHW, at least `count * imageBytes` bytes) and their packed
   * parameters (`null` = eval mode: normalise only), and records the kernel writing float32
   * NCHW into `out` (at least {@linkcode outputBytes} bytes). Nothing is submitted except as
   * described in the class doc; read `out` or submit to run it.
   */
  run(pixels: Uint8Array, params: Uint32Array | null, count: number, out: BufferView): void {
    if (this.#disposed) throw new Error("GpuAugmenter: used after dispose()");
    if (!(count >= 0 && count <= this.maxBatch)) {
      throw new RangeError(`count ${count} out of range [0, ${this.maxBatch}]`);
    }
    const bytes = count * this.imageBytes;
    if (pixels.length < bytes) {
      throw new RangeError(`pixels has ${pixels.length} bytes, need ${bytes}`);
    }
    if (params && params.length < count) {
      throw new RangeError(`params has ${params.length} entries, need ${count}`);
    }
    if (out.size < this.outputBytes(count)) {
      throw new RangeError(`out has ${out.size} bytes, need ${this.outputBytes(count)}`);
    }
    if (count === 0) return;
    const gpu = this.gpu;
    const slot = this.#slot;
    this.#slot ^= 1;
    // Recorded-but-unsubmitted work still reads this slot: submit it before overwriting.
    if (this.#recordedAt[slot] === gpu.stats.submits) gpu.submit();

    const pixView: BufferView = { buffer: this.#pixels[slot], offset: 0, size: this.#pixelBytes };
    const whole = bytes & ~3;
    if (whole > 0) gpu.write(pixView, pixels.subarray(0, whole));
    if (whole < bytes) {
      this.#tail.fill(0);
      this.#tail.set(pixels.subarray(whole, bytes));
      gpu.write(pixView, this.#tail, whole);
    }
    const parView: BufferView = { buffer: this.#params[slot], offset: 0, size: this.maxBatch * 4 };
    if (params) gpu.write(parView, params.subarray(0, count));

    const total = bytes;
    const [gx, gy] = grid1d(Math.ceil(total / AUGMENT_WORKGROUP));
    const tableView = { buffer: this.#table, offset: 0, size: this.#tableBytes };
    augmentKernel.dispatch(gpu, [pixView, parView, tableView, out], {
      count,
      channels: this.channels,
      height: this.height,
      width: this.width,
      pad: this.pad,
      augment: params ? 1 : 0,
      total,
    }, [gx, gy]);
    this.#recordedAt[slot] = gpu.stats.submits;
  }

  /** Returns the input buffers to the GPU pool. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.gpu.submit();
    for (const b of [...this.#pixels, ...this.#params, this.#table]) this.gpu.release(b);
  }
}
