/**
 * Resume: a training subprocess SIGKILLed mid-epoch and restarted with --resume ends with the
 * same metrics, summary and checkpoint, bit for bit, as an uninterrupted run. In-process, the
 * state that only some methods keep (Meta-Weight-Net and its Adam state, meta-learned class
 * weights) survives a stop-and-resume exactly too.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readCheckpoint } from "../src/checkpoint/mod.ts";
import { Gpu } from "../src/gpu/runtime.ts";
import { train, type TrainOptions } from "../src/train/mod.ts";
import {
  runTrain,
  stableMetrics,
  stableSummary,
  syntheticData,
  tinyArgs,
  trainCommand,
  writeSyntheticIdx,
} from "./train_fixtures.ts";

async function assertSameCheckpoint(a: string, b: string): Promise<void> {
  const fa = (await readCheckpoint(join(a, "checkpoint.safetensors")))!;
  const fb = (await readCheckpoint(join(b, "checkpoint.safetensors")))!;
  assert.deepEqual([...fa.tensors.keys()], [...fb.tensors.keys()]);
  for (const [k, t] of fa.tensors) {
    const u = fb.tensors.get(k)!;
    const ba = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const bb = new Uint8Array(u.data.buffer, u.data.byteOffset, u.data.byteLength);
    assert.deepEqual(bb, ba, `checkpoint tensor ${k} differs`);
  }
  for (const k of ["epoch", "steps", "last", "best", "meta_sums", "rng"]) {
    assert.equal(fb.metadata[k], fa.metadata[k], `checkpoint metadata ${k} differs`);
  }
  const untimed = (h: string) =>
    JSON.parse(h).map((r: Record<string, unknown>) => ({ ...r, timing: null }));
  assert.deepEqual(untimed(fb.metadata.history), untimed(fa.metadata.history));
}

Deno.test({
  name: "resume: SIGKILL mid-epoch, --resume, same final metrics bit for bit",
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "tg-resume-" });
    try {
      await writeSyntheticIdx(root);
      const a = join(root, "a"), b = join(root, "b");
      const full = await runTrain(tinyArgs(root, a), root);
      assert.equal(full.code, 0, full.stderr);
      const epoch2Seconds = JSON.parse(
        (await Deno.readTextFile(join(a, "metrics.jsonl"))).trim().split("\n")[1],
      ).timing.seconds as number;

      // run B: killed in the middle of epoch 2 (the first checkpoint exists)
      const child = trainCommand(tinyArgs(root, b), root).spawn();
      const ckpt = join(b, "checkpoint.safetensors");
      const deadline = Date.now() + 120_000;
      for (;;) {
        try {
          await Deno.stat(ckpt);
          break;
        } catch {
          if (Date.now() > deadline) throw new Error("no checkpoint after 120 s");
          await new Promise((r) => setTimeout(r, 20));
        }
      }
      await new Promise((r) => setTimeout(r, Math.max(200, epoch2Seconds * 400)));
      child.kill("SIGKILL");
      const status = await child.status;
      assert.equal(status.success, false);
      await child.stdout.cancel();
      await child.stderr.cancel();
      const killed = (await readCheckpoint(ckpt))!;
      assert.equal(killed.metadata.epoch, "1", "killed during epoch 2");
      const partial = (await Deno.readTextFile(join(b, "metrics.jsonl"))).trim().split("\n");
      assert.equal(partial.length, 1);

      // resume B
      const resumed = await runTrain(tinyArgs(root, b, ["--resume"]), root);
      assert.equal(resumed.code, 0, resumed.stderr);
      assert.match(resumed.stdout, /resuming .* after epoch 1/);
      assert.deepEqual(await stableMetrics(b), await stableMetrics(a));
      assert.deepEqual(await stableSummary(b), await stableSummary(a));
      await assertSameCheckpoint(a, b);
      const summary = JSON.parse(await Deno.readTextFile(join(b, "summary.json")));
      assert.equal(summary.status, "completed");
      assert.equal(summary.epochsDone, 3);

      // resuming a finished run trains nothing and leaves every file as it was, byte for byte
      const files = async () =>
        await Promise.all(
          ["metrics.jsonl", "summary.json", "report.html", "checkpoint.safetensors"].map(
            async (f) => [f, await Deno.readFile(join(b, f)), (await Deno.stat(join(b, f))).mtime],
          ),
        );
      const before = await files();
      const again = await runTrain(tinyArgs(root, b, ["--resume"]), root);
      assert.equal(again.code, 0, again.stderr);
      assert.match(again.stdout, /holds a completed run \(3 of 3 epochs\): nothing to train/);
      assert.doesNotMatch(again.stdout, /resuming|epoch \d/);
      assert.deepEqual(await files(), before);

      // a changed setting is refused on resume
      const changed = await runTrain(tinyArgs(root, b, ["--resume", "--lr", "0.05"]), root);
      assert.equal(changed.code, 2);
      assert.match(changed.stderr, /--lr differ from the checkpoint/);
    } finally {
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "resume: MWN and meta-learned class weights survive stop and resume exactly",
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "tg-resume2-" });
    const gpu = await Gpu.create();
    try {
      const data = syntheticData();
      for (const method of ["mwn", "meta-update-wy"] as const) {
        const base: TrainOptions = {
          data,
          gpu,
          method,
          dataset: "mnist",
          imbalance: 10,
          maxPerClass: 30,
          testPerClass: 5,
          batch: 16,
          epochs: 3,
          lrDecayEpochs: [2],
          lrDecayFactor: 0.1,
          // stage 2 and tau of the meta step (MWN, meta from epoch 0, reads neither)
          ...(method === "mwn" ? {} : { metaStart: 1, tau: 1 }),
          progress: null,
        };
        const a = join(root, `${method}-a`), b = join(root, `${method}-b`);
        const full = await train({ ...base, out: a });
        assert.equal(full.status, "completed");
        const first = await train({ ...base, out: b, maxEpochs: 2 });
        assert.equal(first.status, "running");
        assert.equal(first.epochsDone, 2);
        const rest = await train({ ...base, out: b, resume: true });
        assert.equal(rest.status, "completed");
        // a completed run resumed again: its summary as written, no file touched
        const summaryText = await Deno.readTextFile(join(b, "summary.json"));
        const stat = await Deno.stat(join(b, "report.html"));
        const again = await train({ ...base, out: b, resume: true });
        assert.deepEqual(again, JSON.parse(summaryText));
        assert.equal(await Deno.readTextFile(join(b, "summary.json")), summaryText);
        assert.deepEqual((await Deno.stat(join(b, "report.html"))).mtime, stat.mtime);
        assert.deepEqual(await stableMetrics(b), await stableMetrics(a));
        assert.deepEqual(await stableSummary(b), await stableSummary(a));
        await assertSameCheckpoint(a, b);
        const ck = (await readCheckpoint(join(b, "checkpoint.safetensors")))!;
        if (method === "mwn") {
          assert.ok(ck.tensors.has("mwn.fc1.weight"));
          // the class-imbalance step by default: the VNet's SGD momentum, no Adam state
          assert.ok(ck.tensors.has("mwn.sgd.momentum_buffer.fc1.weight"));
          assert.ok(![...ck.tensors.keys()].some((k) => k.startsWith("mwn.adam.")));
        } else {
          // the class weights moved away from w_y
          assert.ok(rest.finalClassWeights);
          assert.notDeepEqual(
            rest.finalClassWeights.map((v) => Math.fround(v)),
            rest.classWeights.map((v) => Math.fround(v)),
          );
        }
      }
    } finally {
      gpu.dispose();
      await Deno.remove(root, { recursive: true });
    }
  },
});
