/**
 * `deno task train [flags]`: trains a model on a long-tailed dataset with one of the weighting
 * methods and writes metrics.jsonl, summary.json, a safetensors checkpoint and report.html to
 * --out. Run with --help for the flags. Exit status: 0 done, 1 failed (data, checkpoint, GPU,
 * non-finite loss), 2 bad command line. A mistake in the input prints one message that says
 * what to do, without a stack trace (set TAILGRAD_DEBUG=1 to see it).
 */
import { parseTrainArgs, usage } from "../src/train/cli.ts";
import { train } from "../src/train/trainer.ts";
import { reportError, UserError } from "../src/errors.ts";
import { largeMain, wantsLargePreset } from "../src/large/cli.ts";

async function main(args: string[]): Promise<number> {
  if (wantsLargePreset(args)) return await largeMain(args); // src/large: JPEG datasets
  try {
    const parsed = parseTrainArgs(args);
    if (parsed.help) {
      console.log(usage());
      return 0;
    }
    const summary = await train(parsed.options);
    if (summary.status === "stopped") {
      console.error(`error: ${summary.message ?? "stopped"}`);
      return 1;
    }
    return 0;
  } catch (e) {
    return reportError(asUserError(e));
  }
}

/**
 * Permission errors, which the user can fix, worded as such; anything else unchanged (a missing
 * GPU is a UserError already).
 */
function asUserError(e: unknown): unknown {
  if (e instanceof Deno.errors.NotCapable || e instanceof Deno.errors.PermissionDenied) {
    return new UserError(e.message, {
      cause: e,
      hint: "the train task may write only under runs/ and data/: choose --out there, or " +
        "run scripts/train.ts with a wider --allow-write",
    });
  }
  return e;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
