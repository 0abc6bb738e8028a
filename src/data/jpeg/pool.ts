/**
 * A small pool of decode workers. {@linkcode DecodePool.decode} returns a promise per file;
 * each worker holds at most `perWorker` files at a time and the rest wait in a FIFO, so the
 * caller's submission window bounds memory. Results come back in any order; callers await the
 * promises in their own order, which makes the output order deterministic. With `workers: 0`
 * files are decoded on the calling thread (tests, per-core benchmarks).
 */
import { badJpegError, imageReadError } from "../errors.ts";
import { decodeJpeg, type RgbImage } from "./decode.ts";

/** Options of {@linkcode DecodePool}. */
export interface DecodePoolOptions {
  /** Worker threads; default: cores - 1 (at least 1). 0 decodes on the calling thread. */
  workers?: number;
  /** Files in flight per worker; default 2 (one decoding, one waiting to start). */
  perWorker?: number;
}

interface Task {
  id: number;
  path: string;
  where: string;
  resolve: (img: RgbImage) => void;
  reject: (e: unknown) => void;
}

interface Reply {
  id: number;
  width?: number;
  height?: number;
  data?: Uint8Array;
  error?: string;
  kind?: "missing" | "read" | "decode";
}

/** The default worker count: all cores but one (the one that drives the GPU), at least 1. */
export function defaultWorkers(): number {
  return Math.max(1, (navigator.hardwareConcurrency ?? 2) - 1);
}

/** Decodes JPEG files on worker threads. */
export class DecodePool {
  /** Number of worker threads (0: decoding on the calling thread). */
  readonly workers: number;
  #threads: { worker: Worker; busy: Map<number, Task> }[] = [];
  #waiting: Task[] = [];
  #perWorker: number;
  #nextId = 1;
  #closed = false;

  /** Starts the workers. */
  constructor(options: DecodePoolOptions = {}) {
    this.workers = options.workers ?? defaultWorkers();
    this.#perWorker = Math.max(1, options.perWorker ?? 2);
    for (let i = 0; i < this.workers; i++) {
      const worker = new Worker(new URL("./worker.ts", import.meta.url).href, { type: "module" });
      const thread = { worker, busy: new Map<number, Task>() };
      worker.onmessage = (e: MessageEvent<Reply>) => this.#reply(thread, e.data);
      worker.onerror = (e: ErrorEvent) => {
        e.preventDefault();
        for (const task of thread.busy.values()) {
          // the worker catches every read and decode error, so this is a bug: keep its stack
          task.reject(
            new Error(`${task.where}: decode worker of ${task.path} failed: ${e.message}`),
          );
        }
        thread.busy.clear();
      };
      this.#threads.push(thread);
    }
  }

  /**
   * Decodes the JPEG at `path`. `where` (e.g. "list.txt:17") prefixes error messages; errors
   * are {@linkcode DataError}s naming the file.
   */
  decode(path: string, where = path): Promise<RgbImage> {
    if (this.#closed) return Promise.reject(new Error("DecodePool is closed"));
    if (this.workers === 0) return this.#decodeHere(path, where);
    return new Promise((resolve, reject) => {
      this.#waiting.push({ id: this.#nextId++, path, where, resolve, reject });
      this.#dispatch();
    });
  }

  async #decodeHere(path: string, where: string): Promise<RgbImage> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(path);
    } catch (e) {
      throw imageReadError(where, path, e);
    }
    try {
      return decodeJpeg(bytes);
    } catch (e) {
      throw badJpegError(where, path, e instanceof Error ? e.message : String(e));
    }
  }

  #dispatch(): void {
    while (this.#waiting.length > 0) {
      let best = this.#threads[0];
      for (const t of this.#threads) if (t.busy.size < best.busy.size) best = t;
      if (best.busy.size >= this.#perWorker) return;
      const task = this.#waiting.shift()!;
      best.busy.set(task.id, task);
      best.worker.postMessage({ id: task.id, path: task.path });
    }
  }

  #reply(thread: { busy: Map<number, Task> }, r: Reply): void {
    const task = thread.busy.get(r.id);
    if (!task) return;
    thread.busy.delete(r.id);
    if (r.error !== undefined) {
      task.reject(
        r.kind === "decode" ? badJpegError(task.where, task.path, r.error) : imageReadError(
          task.where,
          task.path,
          r.kind === "missing" ? new Deno.errors.NotFound(r.error) : r.error,
        ),
      );
    } else task.resolve({ width: r.width!, height: r.height!, data: r.data! });
    this.#dispatch();
  }

  /** Files submitted and not yet finished. */
  get pending(): number {
    let n = this.#waiting.length;
    for (const t of this.#threads) n += t.busy.size;
    return n;
  }

  /** Stops the workers; unfinished decodes are rejected. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const t of this.#threads) {
      t.worker.terminate();
      for (const task of t.busy.values()) task.reject(new Error("DecodePool closed"));
    }
    for (const task of this.#waiting) task.reject(new Error("DecodePool closed"));
    this.#waiting = [];
  }
}
