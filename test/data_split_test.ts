import assert from "node:assert/strict";
import {
  BalancedDevSampler,
  betaForCount,
  classCounts,
  effectiveNumber,
  effectiveNumberWeights,
  epochPermutation,
  EpochSampler,
  loadIdxTrainLabels,
  longTailCounts,
  longTailSplit,
  Rng,
} from "../src/data/mod.ts";

const FMNIST = "/usr/share/datasets/fashion-mnist";
const haveFmnist = (() => {
  try {
    return Deno.statSync(`${FMNIST}/train-labels-idx1-ubyte.gz`).isFile;
  } catch {
    return false;
  }
})();

function approx(a: number, b: number, tol = 1e-12) {
  assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} != ${b}`);
}

Deno.test("long-tailed splits of real Fashion-MNIST follow the formula", {
  ignore: !haveFmnist,
}, async () => {
  const { labels, dir } = await loadIdxTrainLabels("fashion-mnist", {
    dataDir: FMNIST,
    env: {},
  });
  assert.equal(dir, FMNIST);
  assert.equal(labels.length, 60000);
  assert.deepEqual(classCounts(labels, 10), new Array(10).fill(6000));
  for (const IF of [100, 10]) {
    const s = longTailSplit(labels, 10, { imbalanceFactor: IF, seed: 7 });
    assert.equal(s.nMax, 5990);
    const formula = Array.from({ length: 10 }, (_, c) => Math.floor(5990 * IF ** (-c / 9)));
    assert.deepEqual(s.counts, formula);
    assert.equal(s.counts[0], 5990);
    assert.equal(s.counts[9], Math.floor(5990 / IF));
    // Counts of the actual labels agree, the dev set is 10 per class and disjoint.
    assert.deepEqual(classCounts(Array.from(s.train, (i) => labels[i]), 10), formula);
    assert.deepEqual(classCounts(Array.from(s.dev, (i) => labels[i]), 10), new Array(10).fill(10));
    assert.deepEqual(s.devCounts, new Array(10).fill(10));
    const dev = new Set(s.dev);
    assert.equal(dev.size, 100);
    assert.ok(s.train.every((i) => !dev.has(i)));
    assert.equal(new Set(s.train).size, s.train.length);
    // Same seed, same indices; another seed, other indices.
    const again = longTailSplit(labels, 10, { imbalanceFactor: IF, seed: 7 });
    assert.deepEqual(again.train, s.train);
    assert.deepEqual(again.dev, s.dev);
    const other = longTailSplit(labels, 10, { imbalanceFactor: IF, seed: 8 });
    assert.notDeepEqual(other.dev, s.dev);
    assert.deepEqual(other.counts, s.counts);
    console.log(`IF ${IF}: counts ${s.counts.join(" ")} (total ${s.train.length})`);
  }
  // IF 1 keeps the balanced set minus dev; a cap scales n_max down.
  const flat = longTailSplit(labels, 10, { imbalanceFactor: 1, seed: 1 });
  assert.deepEqual(flat.counts, new Array(10).fill(5990));
  assert.equal(flat.train.length + flat.dev.length, 60000);
  const small = longTailSplit(labels, 10, { imbalanceFactor: 100, seed: 1, maxPerClass: 1000 });
  assert.equal(small.nMax, 1000);
  assert.deepEqual(small.counts, longTailCounts(1000, 10, 100));
  assert.deepEqual(small.counts, [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]);
});

Deno.test("long-tail counts: known values", () => {
  // The CIFAR-10-LT counts used in the literature (n_max 5000, IF 100).
  assert.deepEqual(longTailCounts(5000, 10, 100), [
    5000,
    2997,
    1796,
    1077,
    645,
    387,
    232,
    139,
    83,
    50,
  ]);
  assert.deepEqual(longTailCounts(5990, 10, 1), new Array(10).fill(5990));
  assert.throws(() => longTailCounts(10, 10, 0.5), RangeError);
  // A synthetic unbalanced source: short classes keep what they have.
  const labels = [...new Array(50).fill(0), ...new Array(30).fill(1), ...new Array(12).fill(2)];
  const s = longTailSplit(labels, 3, { imbalanceFactor: 4, seed: 3, devPerClass: 2 });
  assert.equal(s.nMax, 48);
  // floor(48 / 2) = 24 of 28 left; floor(48 / 4) = 12 capped at the 10 left.
  assert.deepEqual(s.counts, [48, 24, 10]);
});

Deno.test("effective-number weights match hand-computed values", () => {
  // beta = 1/2, counts [1, 2, 3]: raw (1-b)/(1-b^n) = 1, 2/3, 4/7; sum 47/21; scaled to 3.
  const w = effectiveNumberWeights([1, 2, 3], 0.5);
  approx(w[0], 63 / 47);
  approx(w[1], 42 / 47);
  approx(w[2], 36 / 47);
  approx(w.reduce((a, b) => a + b, 0), 3);
  // beta = 0.9, counts [10, 1]: raw 0.1 / (1 - 0.9^10) and 1; 0.9^10 = 0.3486784401.
  const r0 = 0.1 / (1 - 0.3486784401), r1 = 1;
  const w2 = effectiveNumberWeights([10, 1], 0.9);
  approx(w2[0], (2 * r0) / (r0 + r1));
  approx(w2[1], (2 * r1) / (r0 + r1));
  // Default beta 0.9999, Fashion-MNIST-LT IF 100 head/tail.
  const w3 = effectiveNumberWeights([5990, 59]);
  const e0 = (1 - 0.9999 ** 5990) / 0.0001, e1 = (1 - 0.9999 ** 59) / 0.0001;
  approx(w3[0], (2 * (1 / e0)) / (1 / e0 + 1 / e1), 1e-9);
  approx(effectiveNumber(59, 0.9999), e1, 1e-9);
  // Zero counts get zero weight; the others still sum to C.
  const w4 = effectiveNumberWeights([5, 0, 5], 0.5);
  assert.deepEqual([...w4], [1.5, 0, 1.5]);
  // beta = (n-1)/n.
  assert.equal(betaForCount(10), 0.9);
  assert.equal(betaForCount(1), 0);
  approx(effectiveNumberWeights([4, 4, 4], betaForCount(100))[1], 1);
});

Deno.test("Rng: seeded, serialisable, unbiased-ish", () => {
  const a = new Rng(42);
  const first = Array.from({ length: 5 }, () => a.nextU32());
  const b = new Rng(42);
  assert.deepEqual(Array.from({ length: 5 }, () => b.nextU32()), first);
  const state = a.getState();
  const next = [a.nextU32(), a.nextInt(10), a.nextFloat()];
  const c = new Rng(0);
  c.setState(JSON.parse(JSON.stringify(state)));
  assert.deepEqual([c.nextU32(), c.nextInt(10), c.nextFloat()], next);
  assert.notDeepEqual(new Rng(42, 1).getState(), new Rng(42, 2).getState());
  assert.notDeepEqual(new Rng(1).getState(), new Rng(2).getState());
  assert.throws(() => c.setState({ s: [0, 0, 0, 0] }), TypeError);
  const hist = new Array(6).fill(0);
  for (let i = 0; i < 60000; i++) hist[a.nextInt(6)]++;
  for (const h of hist) assert.ok(Math.abs(h - 10000) < 500, `${hist}`);
  for (let i = 0; i < 1000; i++) {
    const f = a.nextFloat();
    assert.ok(f >= 0 && f < 1);
  }
});

Deno.test("samplers: per-epoch shuffles from (seed, epoch); balanced dev batches", () => {
  const p0 = epochPermutation(100, 5, 0);
  assert.deepEqual(epochPermutation(100, 5, 0), p0);
  assert.notDeepEqual(epochPermutation(100, 5, 1), p0);
  assert.deepEqual([...p0].sort((x, y) => x - y), Array.from({ length: 100 }, (_, i) => i));

  const indices = Array.from({ length: 23 }, (_, i) => i * 3);
  const s = new EpochSampler(indices, { batchSize: 5, seed: 9 });
  assert.equal(s.batchesPerEpoch, 5);
  const seen: number[] = [];
  for (let k = 0; k < s.batchesPerEpoch; k++) seen.push(...s.batch(2, k));
  assert.deepEqual(seen.sort((x, y) => x - y), indices);
  // A fresh sampler ("resumed run") gives the same batch for the same (epoch, step).
  const resumed = new EpochSampler(indices, { batchSize: 5, seed: 9 });
  assert.deepEqual([...resumed.batch(2, 3)], [...s.batch(2, 3)]);
  assert.equal(
    new EpochSampler(indices, { batchSize: 5, seed: 9, dropLast: true }).batchesPerEpoch,
    4,
  );

  const labels = Uint8Array.from({ length: 60 }, (_, i) => i % 3);
  const dev = Array.from({ length: 30 }, (_, i) => i * 2); // 10 per class
  const d = new BalancedDevSampler(dev, labels, 3, { perClass: 4, seed: 1 });
  assert.equal(d.batchSize, 12);
  const b0 = [...d.batch(0)];
  assert.deepEqual(b0.map((i) => labels[i]), [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2, 2]);
  assert.ok(b0.every((i) => dev.includes(i)));
  assert.equal(new Set(b0).size, 12);
  assert.deepEqual(
    [...new BalancedDevSampler(dev, labels, 3, { perClass: 4, seed: 1 }).batch(0)],
    b0,
  );
  assert.notDeepEqual([...d.batch(1)], b0);
});
