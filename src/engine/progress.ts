/**
 * Progress output: a one-line bar redrawn in place (images/s, ETA, running loss) when stdout is
 * a terminal; plain lines at most every `interval` seconds otherwise (logs, CI, pipes).
 */

/** Formats seconds as h:mm:ss or m:ss. */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "?";
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  const mm = h > 0 ? String(m).padStart(2, "0") : String(m);
  return `${h > 0 ? `${h}:` : ""}${mm}:${String(r).padStart(2, "0")}`;
}

/** Where progress goes. */
export interface ProgressSink {
  /** Writes a complete line (newline added). */
  line(text: string): void;
  /** Redraws the status line in place (terminal only). */
  status?(text: string): void;
}

/** The default sink: stdout, with an in-place bar when it is a terminal. */
export function stdoutSink(): ProgressSink {
  const enc = new TextEncoder();
  const tty = Deno.stdout.isTerminal();
  let drawn = false;
  const write = (s: string) => Deno.stdout.writeSync(enc.encode(s));
  return {
    line(text) {
      write(`${drawn ? "\r\x1b[2K" : ""}${text}\n`);
      drawn = false;
    },
    status: tty
      ? (text) => {
        let cols = 120;
        try {
          const c = Deno.consoleSize().columns;
          if (c >= 20) cols = c;
        } catch {
          // no size known: keep the default width
        }
        write(`\r\x1b[2K${text.slice(0, cols - 1)}`);
        drawn = true;
      }
      : undefined,
  };
}

/** Tracks an epoch's steps and prints progress. */
export class Progress {
  /** Where lines and the status bar go. */
  readonly sink: ProgressSink;
  /** Seconds between plain lines when there is no terminal. */
  readonly interval: number;
  #epoch = 0;
  #epochs = 0;
  #steps = 0;
  #phase = "";
  #start = 0;
  #lastLine = 0;
  /** Estimated seconds of the epochs after this one. */
  #later = 0;

  /** Progress to `sink`; without a status bar, plain lines at most every `interval` seconds. */
  constructor(sink: ProgressSink, interval = 20) {
    this.sink = sink;
    this.interval = interval;
  }

  /** Starts an epoch of `steps` steps; `laterSeconds` estimates the rest of the run after it. */
  epochStart(
    epoch: number,
    epochs: number,
    steps: number,
    phase: string,
    laterSeconds: number,
  ): void {
    this.#epoch = epoch;
    this.#epochs = epochs;
    this.#steps = steps;
    this.#phase = phase;
    this.#start = performance.now();
    this.#lastLine = this.#start;
    this.#later = laterSeconds;
  }

  /** Reports `done` steps finished (of `images` images so far), with the running loss. */
  update(done: number, images: number, loss: number): void {
    const now = performance.now();
    const elapsed = (now - this.#start) / 1000;
    const rate = elapsed > 0 ? images / elapsed : 0;
    const perStep = done > 0 ? elapsed / done : NaN;
    const eta = perStep * (this.#steps - done) + this.#later;
    const head = `epoch ${this.#epoch + 1}/${this.#epochs} ${this.#phase}`;
    const tail = `${done}/${this.#steps} steps  ${rate.toFixed(1)} img/s  loss ${
      loss.toFixed(4)
    }  ETA ${formatDuration(eta)}`;
    if (this.sink.status) {
      const width = 24;
      const fill = Math.round((width * done) / Math.max(1, this.#steps));
      this.sink.status(`${head} [${"#".repeat(fill)}${".".repeat(width - fill)}] ${tail}`);
    } else if ((now - this.#lastLine) / 1000 >= this.interval && done < this.#steps) {
      this.sink.line(`${head}: ${tail}`);
      this.#lastLine = now;
    }
  }

  /** Prints a complete line (clearing the bar). */
  line(text: string): void {
    this.sink.line(text);
  }
}
