/**
 * `deno task train [flags]`: trains a model on a long-tailed dataset with one of the weighting
 * methods and writes metrics.jsonl, summary.json, a safetensors checkpoint and report.html to
 * --out. Run with --help for the flags. Exit status: 0 done, 1 failed (data, GPU, non-finite
 * loss), 2 bad command line.
 */
import { parseTrainArgs, usage } from "../src/train/cli.ts";
import { ConfigError } from "../src/train/config.ts";
import { train } from "../src/train/trainer.ts";
import { DataError } from "../src/data/errors.ts";
import { GpuUnavailableError } from "../src/gpu/device.ts";
import { SafetensorsError } from "../src/checkpoint/safetensors.ts";

function fail(message: string, code: number): number {
  console.error(`error: ${message}`);
  return code;
}

async function main(args: string[]): Promise<number> {
  let parsed;
  try {
    parsed = parseTrainArgs(args);
  } catch (e) {
    if (e instanceof ConfigError) return fail(`${e.message}\n(run with --help for details)`, 2);
    throw e;
  }
  if (parsed.help) {
    console.log(usage());
    return 0;
  }
  try {
    const summary = await train(parsed.options);
    if (summary.status === "stopped") return fail(summary.message ?? "stopped", 1);
    return 0;
  } catch (e) {
    if (e instanceof ConfigError) return fail(e.message, 2);
    if (
      e instanceof DataError || e instanceof GpuUnavailableError || e instanceof SafetensorsError
    ) {
      return fail(e.message, 1);
    }
    if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
      return fail(
        `${e.message}\n(the train task may write only under runs/ and data/: choose --out ` +
          `there, or run scripts/train.ts with a wider --allow-write)`,
        1,
      );
    }
    console.error(e instanceof Error ? (e.stack ?? e.message) : e);
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
