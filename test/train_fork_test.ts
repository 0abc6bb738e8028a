/**
 * Stage-1 sharing (`--init-from`): a run forked from a shared stage-1 checkpoint ends bit for
 * bit where the same run trained from scratch ends (metrics, summary numbers, every checkpoint
 * tensor), the stage-1 checkpoint is only read, a killed fork resumes from its own checkpoint,
 * and a fork that could not equal the run from scratch is refused with a UserError naming why.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readCheckpoint } from "../src/checkpoint/mod.ts";
import { UserError } from "../src/errors.ts";
import { Gpu } from "../src/gpu/runtime.ts";
import { train, type TrainOptions } from "../src/train/mod.ts";
import { stableMetrics, syntheticData, syntheticSplit } from "./train_fixtures.ts";

/** summary.json without what differs between a fork and its run from scratch by design. */
async function forkStableSummary(out: string): Promise<Record<string, unknown>> {
  const s = JSON.parse(await Deno.readTextFile(join(out, "summary.json")));
  delete s.wallSeconds;
  delete s.initFrom;
  delete s.config.out;
  delete s.config.initFrom;
  return s;
}

async function assertSameTensors(a: string, b: string): Promise<void> {
  const fa = (await readCheckpoint(join(a, "checkpoint.safetensors")))!;
  const fb = (await readCheckpoint(join(b, "checkpoint.safetensors")))!;
  assert.deepEqual([...fb.tensors.keys()].sort(), [...fa.tensors.keys()].sort());
  for (const [k, t] of fa.tensors) {
    const u = fb.tensors.get(k)!;
    const ba = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    const bb = new Uint8Array(u.data.buffer, u.data.byteOffset, u.data.byteLength);
    assert.deepEqual(bb, ba, `checkpoint tensor ${k} differs`);
  }
  for (const k of ["epoch", "steps", "last", "best", "final", "meta_sums", "rng"]) {
    assert.equal(fb.metadata[k], fa.metadata[k], `checkpoint metadata ${k} differs`);
  }
}

const sha = async (path: string) =>
  Array.from(
    new Uint8Array(await crypto.subtle.digest("SHA-256", await Deno.readFile(path))),
  ).join(",");

Deno.test({
  name: "fork: stage 2 forked from a shared stage-1 checkpoint equals the run from scratch",
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "tg-fork-" });
    const gpu = await Gpu.create();
    try {
      const base: TrainOptions = {
        data: syntheticData(),
        gpu,
        dataset: "mnist",
        imbalance: 10,
        maxPerClass: 30,
        testPerClass: 5,
        batch: 16,
        epochs: 3,
        metaStart: 2,
        lrDecayEpochs: [2],
        lrDecayFactor: 0.1,
        finalFullTest: true,
        progress: null,
      };
      // [stage-1 method, forked method, loss]: CE pre-training shared by meta; LDAM by ldam-drw
      const cases = [["ce", "meta", "ce"], ["ldam", "ldam-drw", "ldam"]] as const;
      for (const [stage1, method, loss] of cases) {
        const s1 = join(root, `${stage1}-stage1`);
        const scratch = join(root, `${method}-scratch`), fork = join(root, `${method}-fork`);
        // tau only where a meta step reads it (ce, ldam and ldam-drw refuse it)
        const withLoss = method === "meta" ? { loss, tau: 1 } : {};
        const full = await train({ ...base, method, ...withLoss, out: scratch });
        assert.equal(full.status, "completed");
        assert.ok(full.final, "the final evaluation on the whole test set is recorded");
        assert.equal(full.final.epoch, 2);
        const counted = full.final.perClassAccuracy.length;
        assert.equal(counted, 10);

        // ce warms up (Cui's recipe) where the meta family does not: the shared stage 1 of a
        // meta run is a ce run with the meta recipe's settings
        const recipe = stage1 === "ce" ? { warmupEpochs: 0 } : {};
        const shared = await train({ ...base, method: stage1, ...recipe, out: s1, untilEpoch: 2 });
        assert.equal(shared.status, "running");
        assert.equal(shared.epochsDone, 2);
        const ckpt = join(s1, "checkpoint.safetensors");
        const before = await sha(ckpt);

        const forked = await train({ ...base, method, ...withLoss, initFrom: ckpt, out: fork });
        assert.equal(forked.status, "completed");
        assert.equal(await sha(ckpt), before, "the stage-1 checkpoint is only read");
        assert.deepEqual(await stableMetrics(fork), await stableMetrics(scratch));
        assert.deepEqual(await forkStableSummary(fork), await forkStableSummary(scratch));
        await assertSameTensors(scratch, fork);
        assert.equal(forked.initFrom?.checkpoint, ckpt);
        assert.equal(forked.initFrom?.epoch, 2);
        const parentWall = Number((await readCheckpoint(ckpt))!.metadata.wall_seconds);
        assert.ok(parentWall > 0);
        assert.equal(forked.initFrom?.wallSeconds, parentWall);
        assert.ok(forked.wallSeconds > forked.initFrom!.wallSeconds, "wall time includes stage 1");
      }

      // a fork killed after its first epoch resumes from its own checkpoint, exactly
      const ckpt = join(root, "ce-stage1", "checkpoint.safetensors");
      const part = join(root, "meta-part");
      const first = await train({
        ...base,
        method: "meta",
        tau: 1,
        initFrom: ckpt,
        out: part,
        maxEpochs: 0,
      });
      assert.equal(first.status, "running");
      const files = await Array.fromAsync(Deno.readDir(part)).catch(() => []);
      assert.deepEqual(files, [], "a fork writes nothing before its first checkpoint");
      const rest = await train({
        ...base,
        method: "meta",
        tau: 1,
        initFrom: ckpt,
        out: part,
        resume: true,
      });
      assert.equal(rest.status, "completed");
      assert.deepEqual(await stableMetrics(part), await stableMetrics(join(root, "meta-scratch")));
      await assertSameTensors(join(root, "meta-scratch"), part);
      const again = await train({ ...base, method: "meta", tau: 1, out: part, resume: true });
      assert.equal(again.initFrom?.checkpoint, ckpt, "resuming a fork keeps where it came from");
    } finally {
      gpu.dispose();
      await Deno.remove(root, { recursive: true });
    }
  },
});

Deno.test({
  name: "fork: --init-from refuses checkpoints that could not give the run from scratch",
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "tg-fork-bad-" });
    const gpu = await Gpu.create();
    try {
      const base: TrainOptions = {
        data: syntheticData(),
        gpu,
        dataset: "mnist",
        imbalance: 10,
        maxPerClass: 30,
        testPerClass: 5,
        batch: 16,
        epochs: 3,
        metaStart: 2,
        lrDecayEpochs: [2],
        progress: null,
      };
      const parent = join(root, "ce");
      await train({ ...base, method: "ce", out: parent });
      const ckpt = join(parent, "checkpoint.safetensors");
      const refused = async (options: TrainOptions, pattern: RegExp) => {
        const out = join(root, `bad-${Math.random().toString(36).slice(2)}`);
        await assert.rejects(
          () => train({ ...base, method: "meta", initFrom: ckpt, out, ...options }),
          (e: unknown) => {
            assert.ok(e instanceof UserError, String(e));
            assert.match(e.message, /--init-from/);
            assert.match(e.message, pattern);
            return true;
          },
        );
        await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "nothing written");
      };
      // the parent completed 3 epochs: past this run's stage-2 start
      await refused({}, /epoch 3, after this run's stage 2 starts \(--meta-start 2\)/);
      const s1 = join(root, "ce-s1");
      await train({ ...base, method: "ce", warmupEpochs: 0, out: s1, untilEpoch: 2 });
      const early = join(s1, "checkpoint.safetensors");
      // a ce run with its own recipe (a warm-up) trained otherwise than meta's stage 1
      const warm = join(root, "ce-warm");
      await train({ ...base, method: "ce", out: warm, untilEpoch: 2 });
      await refused(
        { initFrom: join(warm, "checkpoint.safetensors") },
        /--warmup-epochs 0 \(checkpoint: 0\.075/,
      );
      const refusedEarly = (o: TrainOptions, p: RegExp) => refused({ initFrom: early, ...o }, p);
      await refusedEarly({ method: "cb" }, /epoch 0 of its run .* trained otherwise/);
      await refusedEarly({ method: "focal" }, /ce loss .* this one with focal/);
      await refusedEarly({ seed: 1 }, /--seed 1 \(checkpoint: 0\)/);
      await refusedEarly({ lr: 0.05 }, /learning rate of epoch 0 differs/);
      await refusedEarly({ batch: 8 }, /--batch 8 \(checkpoint: 16\)/);
      await refusedEarly({ testPerClass: 4 }, /--test-per-class 4/);
      await refusedEarly({ initFrom: join(root, "absent.safetensors") }, /no such file/);
      await Deno.writeTextFile(join(root, "junk.safetensors"), "not a checkpoint");
      await refusedEarly({ initFrom: join(root, "junk.safetensors") }, /not a valid safetensors/);
      // other data: the fingerprint recorded in the checkpoint differs
      const other = { train: syntheticSplit("train", 60, 7), test: syntheticSplit("test", 20, 2) };
      await refusedEarly({ data: other }, /trained on other data/);
      // what stage 2 alone reads may differ: tau, beta, the lr decays after the fork
      const ok = await train({
        ...base,
        method: "meta",
        initFrom: early,
        out: join(root, "ok"),
        tau: 5,
        beta: 0.99,
        lrDecayFactor: 0.5,
      });
      assert.equal(ok.status, "completed");
    } finally {
      gpu.dispose();
      await Deno.remove(root, { recursive: true });
    }
  },
});
