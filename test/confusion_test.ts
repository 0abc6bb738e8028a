/**
 * Confusion matrices (src/engine/confusion.ts, src/engine/metrics.ts): the accumulator's sparse
 * counts against a dense reference (the accumulator as it was), on random predictions with ties,
 * C not a power of two and classes absent from the evaluation; the recorded form (dense up to
 * 100 classes, sparse above); the dense <-> sparse round trip; checks of malformed matrices;
 * metrics read back from an old checkpoint; and the size of a summary at iNaturalist 2018's
 * 8142 classes, serialised as the trainers write summary.json and the checkpoint's metadata.
 */
import assert from "node:assert/strict";
import {
  canonicalConfusion,
  checkConfusion,
  type Confusion,
  confusionClasses,
  confusionRowTotals,
  DENSE_CONFUSION_CLASSES,
  denseConfusion,
  isSparseConfusion,
  recordedConfusion,
  type SparseConfusion,
  sparseConfusion,
} from "../src/engine/confusion.ts";
import {
  type EvalMetrics,
  MetricAccumulator,
  metricsFromJson,
  shotGroups,
  withShots,
} from "../src/engine/metrics.ts";
import { encodeSafetensors } from "../src/checkpoint/safetensors.ts";
import { Rng } from "../src/random.ts";
import { checkResumeMetadata } from "../src/train/validate.ts";
import { resolveTrainConfig } from "../src/train/config.ts";
import { CHECKPOINT_FORMAT } from "../src/train/trainer.ts";
import { UserError } from "../src/errors.ts";

/** The accumulator's metrics as the dense C x C implementation computed them. */
function denseReference(logits: Float32Array, labels: number[], C: number, scale = 1) {
  const confusion = Array.from({ length: C }, () => new Array<number>(C).fill(0));
  const hits = [0, 0, 0];
  let loss = 0;
  labels.forEach((y, i) => {
    const row = logits.subarray(i * C, (i + 1) * C);
    let rank = 0, pred = 0, mx = -Infinity;
    for (let j = 0; j < C; j++) {
      if (row[j] > row[y] || (row[j] === row[y] && j < y) || Number.isNaN(row[j])) rank++;
      if (row[j] > mx) [mx, pred] = [row[j], j];
    }
    [1, 3, 5].forEach((k, h) => (hits[h] += rank < k ? 1 : 0));
    let se = 0;
    for (let j = 0; j < C; j++) se += Math.exp(scale * (row[j] - mx));
    loss += Math.log(se) - scale * (row[y] - mx);
    confusion[y][pred]++;
  });
  const n = Math.max(1, labels.length);
  const perClassAccuracy = confusion.map((row, c) => {
    const total = row.reduce((a, b) => a + b, 0);
    return total > 0 ? row[c] / total : 0;
  });
  return {
    top1Error: 1 - hits[0] / n,
    top3Error: 1 - hits[1] / n,
    top5Error: 1 - hits[2] / n,
    loss: loss / n,
    perClassAccuracy,
    confusion,
    count: labels.length,
  };
}

/**
 * `n` rows of C logits on 4 levels (so ties are common: the first largest is the prediction) and
 * labels that never name the classes c with c % 5 === 3 (absent from the evaluation, though
 * they are predicted).
 */
function randomBatch(rng: Rng, n: number, C: number) {
  const logits = new Float32Array(n * C);
  for (let i = 0; i < logits.length; i++) logits[i] = rng.nextInt(4) - 1.5;
  const present = Array.from({ length: C }, (_, c) => c).filter((c) => c % 5 !== 3);
  const labels = Array.from({ length: n }, () => present[rng.nextInt(present.length)]);
  return { logits, labels };
}

Deno.test("MetricAccumulator: sparse counts give the dense reference's metrics, bit for bit", () => {
  for (const C of [1, 7, 100, 101, 131]) {
    const rng = new Rng(7, C);
    const n = 3 * C + 5;
    const { logits, labels } = randomBatch(rng, n, C);
    const scale = C === 7 ? 2.5 : 1;
    const acc = new MetricAccumulator(C);
    // in batches of uneven sizes, as the evaluation's last partial batch
    for (const [a, b] of [[0, 4], [4, 4 + C], [4 + C, n]]) {
      acc.add(logits.subarray(a * C), labels.slice(a, b), b - a, scale);
    }
    const got = acc.result();
    const ref = denseReference(logits, labels, C, scale);
    const { confusion, ...rest } = ref;
    assert.deepEqual({ ...got, confusion: null }, { ...rest, confusion: null }, `C ${C}`);
    assert.deepEqual(denseConfusion(got.confusion), confusion, `C ${C}`);
    assert.equal(isSparseConfusion(got.confusion), C > DENSE_CONFUSION_CLASSES, `C ${C}`);
    assert.equal(confusionClasses(got.confusion), C);
    const totals = confusion.map((row) => row.reduce((a, b) => a + b, 0));
    assert.deepEqual(confusionRowTotals(got.confusion), totals);
    if (C > 3) assert.equal(totals[3], 0, "class 3 is absent from the evaluation");
    // the shot groups leave the absent classes out, as with the dense counts
    const trainCounts = Array.from({ length: C }, (_, c) => (c * 37) % 150);
    assert.deepEqual(
      withShots(got, trainCounts).shots,
      shotGroups(ref.perClassAccuracy, trainCounts, totals),
    );
    if (isSparseConfusion(got.confusion)) {
      const { entries } = got.confusion;
      assert.ok(entries.length <= n, "at most one entry per evaluated image");
      assert.equal(entries.reduce((s, e) => s + e[2], 0), n);
      assert.ok(entries.every(([t, p, k]) => confusion[t][p] === k && k > 0));
      assert.ok(entries.every(([t], i) => t % 5 !== 3 && (i === 0 || t >= entries[i - 1][0])));
      assert.deepEqual(checkConfusion(got.confusion, C), got.confusion, "sorted and unique");
    }
  }
});

Deno.test("MetricAccumulator: a label outside the classes is an error naming it", () => {
  const acc = new MetricAccumulator(3);
  assert.throws(
    () => acc.add(new Float32Array(6), [0, 3], 2),
    /label 3 of row 1 is not a class of \[0, 3\)/,
  );
  const empty = new MetricAccumulator(200).result();
  assert.deepEqual(empty.confusion, { classes: 200, entries: [] });
  assert.equal(empty.count, 0);
});

Deno.test("confusion: dense <-> sparse round trip, row totals and the recorded form", () => {
  const dense = [[3, 0, 1], [0, 0, 0], [2, 5, 0]];
  const entries3: [number, number, number][] = [[0, 0, 3], [0, 2, 1], [2, 0, 2], [2, 1, 5]];
  const sparse: SparseConfusion = { classes: 3, entries: entries3 };
  assert.deepEqual(sparseConfusion(dense), sparse);
  assert.deepEqual(denseConfusion(sparse), dense);
  assert.deepEqual(sparseConfusion(sparse), sparse);
  assert.deepEqual(denseConfusion(dense), dense);
  assert.notEqual(denseConfusion(dense), dense, "a copy");
  for (const c of [dense, sparse]) {
    assert.deepEqual(confusionRowTotals(c), [4, 0, 7]);
    assert.equal(confusionClasses(c), 3);
    assert.deepEqual(canonicalConfusion(c), dense, "3 classes are recorded dense");
  }
  // a random sparse matrix of more classes than are recorded dense survives both directions
  const rng = new Rng(3);
  const C = 173, cells = new Map<number, number>();
  for (let i = 0; i < 400; i++) {
    const k = rng.nextInt(C) * C + rng.nextInt(C);
    cells.set(k, (cells.get(k) ?? 0) + 1 + rng.nextInt(3));
  }
  const entries = [...cells].sort((a, b) => a[0] - b[0])
    .map(([k, n]): [number, number, number] => [Math.floor(k / C), k % C, n]);
  const big = recordedConfusion(C, entries);
  assert.deepEqual(big, { classes: C, entries });
  assert.deepEqual(sparseConfusion(denseConfusion(big)), big);
  assert.deepEqual(canonicalConfusion(denseConfusion(big)), big, "an old dense matrix of 173");
  const hundred = recordedConfusion(DENSE_CONFUSION_CLASSES, []);
  assert.ok(Array.isArray(hundred) && hundred.length === 100 && hundred[99].length === 100);
  assert.deepEqual(recordedConfusion(DENSE_CONFUSION_CLASSES + 1, []), {
    classes: 101,
    entries: [],
  });
});

Deno.test("checkConfusion: a malformed matrix is an error that says what is wrong", () => {
  const bad: [unknown, RegExp][] = [
    [[[1, 2], [3]], /row 1 is not a row of 2 counts/],
    [[[1, -1], [0, 0]], /row 0 holds a value that is not a count/],
    [[[1, 0.5], [0, 0]], /row 0 holds a value that is not a count/],
    [{ classes: 0, entries: [] }, /"classes" is 0/],
    [{ classes: 3 }, /"entries" is not a list/],
    [{ classes: 3, entries: [[0, 3, 1]] }, /entry 0 is \[0,3,1\], not \[true, predicted/],
    [{ classes: 3, entries: [[0, 1, 0]] }, /entry 0 is \[0,1,0\]/],
    [{ classes: 3, entries: [[0, 1]] }, /entry 0 is \[0,1\]/],
    [{ classes: 3, entries: [[1, 0, 1], [0, 2, 1]] }, /entry 1 is out of .* order or repeated/],
    [{ classes: 3, entries: [[1, 0, 1], [1, 0, 2]] }, /entry 1 is out of .* order or repeated/],
    ["dense", /"dense" is neither dense rows nor \{classes, entries\}/],
    [null, /null is neither/],
  ];
  for (const [v, re] of bad) assert.throws(() => checkConfusion(v), re, JSON.stringify(v));
  assert.throws(() => checkConfusion([[1]], 2), /1 classes, expected 2/);
  assert.throws(() => checkConfusion({ classes: 3, entries: [] }, 2), /3 classes, expected 2/);
  const ok: Confusion[] = [[[0, 1], [2, 0]], { classes: 2, entries: [[0, 1, 1], [1, 0, 2]] }, []];
  for (const c of ok) assert.equal(checkConfusion(c), c);
});

/** Metrics of C classes whose confusion is `c`, as a checkpoint's metadata holds them. */
function savedMetrics(C: number, c: Confusion): EvalMetrics & { epoch: number } {
  return {
    ...new MetricAccumulator(C).result(),
    perClassAccuracy: new Array(C).fill(0.9),
    confusion: c,
    epoch: 2,
  };
}

Deno.test("metricsFromJson: an old checkpoint's dense metrics come back in today's form", () => {
  // 10 classes: dense then and now; the metadata a resumed run writes is the same string
  const small = savedMetrics(
    10,
    Array.from({ length: 10 }, (_, t) => Array.from({ length: 10 }, (_, p) => (t === p ? 9 : +!p))),
  );
  const back = metricsFromJson(JSON.parse(JSON.stringify(small)));
  assert.equal(JSON.stringify(back), JSON.stringify(small));
  // 150 classes: a checkpoint written before the sparse form holds the dense rows
  const rng = new Rng(5);
  const { logits, labels } = randomBatch(rng, 300, 150);
  const acc = new MetricAccumulator(150);
  acc.add(logits, labels, 300);
  const now = { ...acc.result(), epoch: 4 };
  const old = { ...now, confusion: denseConfusion(now.confusion) };
  const restored = metricsFromJson(JSON.parse(JSON.stringify(old)));
  assert.deepEqual(restored, now);
  assert.equal(JSON.stringify(restored), JSON.stringify(now), "same keys in the same order");
  // a sparse matrix of few classes (not written by any version) is put dense
  const sparseSmall = { ...small, confusion: sparseConfusion(small.confusion) };
  assert.deepEqual(metricsFromJson(sparseSmall), small);
  assert.equal(metricsFromJson(null), null);
  // the confusion must have as many classes as the accuracies
  assert.throws(
    () => metricsFromJson({ ...small, confusion: [[1]] }),
    /confusion matrix: 1 classes, expected 10/,
  );
});

Deno.test("checkResumeMetadata: saved metrics' confusion matrices, either form, are checked", () => {
  const metrics = (c: Confusion) => JSON.stringify(savedMetrics(3, c));
  const metadata = (over: Record<string, string>) => ({
    format: CHECKPOINT_FORMAT,
    config: JSON.stringify(resolveTrainConfig({ epochs: 2 })),
    epoch: "1",
    steps: "5",
    history: JSON.stringify([{}]),
    rng: JSON.stringify({ shuffle: [1], augment: [1], dev: [1] }),
    last: metrics([[1, 0, 0], [0, 2, 0], [0, 0, 0]]),
    best: metrics({ classes: 3, entries: [[0, 0, 1], [1, 1, 2]] }),
    meta_sums: "null",
    ...over,
  });
  const check = (m: Record<string, string>) =>
    checkResumeMetadata(
      { tensors: new Map(), metadata: m },
      "run/ck.safetensors",
      CHECKPOINT_FORMAT,
    );
  // dense (every checkpoint before the sparse form), sparse, null; "final" absent or present
  assert.equal(check(metadata({})).epoch, 1);
  assert.equal(check(metadata({ final: "null", best: "null" })).epoch, 1);
  const bad: [Record<string, string>, RegExp][] = [
    [{ last: metrics([[1, 0], [0, 1]]) }, /"last": confusion matrix: 2 classes, expected 3/],
    [
      { best: metrics({ classes: 3, entries: [[1, 1, 2], [0, 0, 1]] }) },
      /"best": confusion matrix: entry 1 is out of \(true, predicted\) order/,
    ],
    [{ final: metrics([[1, 0, 0], [0, -2, 0], [0, 0, 0]]) }, /"final": confusion matrix: row 1/],
    [{ last: "{}" }, /"last": confusion matrix: undefined is neither/],
  ];
  for (const [over, re] of bad) {
    assert.throws(() => check(metadata(over)), (e: Error) => {
      assert.ok(e instanceof UserError);
      assert.match(e.message, /^checkpoint run\/ck\.safetensors: metadata /);
      assert.match(e.message, re);
      return true;
    });
  }
});

Deno.test("scale: 8142 classes, a few thousand predictions: summary.json and metadata stay small", () => {
  const C = 8142, n = 3000, batch = 100;
  const rng = new Rng(2018);
  const acc = new MetricAccumulator(C);
  const logits = new Float32Array(batch * C);
  for (let at = 0; at < n; at += batch) {
    for (let i = 0; i < logits.length; i++) logits[i] = rng.nextFloat();
    // a model right about half the time: the label's logit is the largest
    const labels = Array.from({ length: batch }, () => rng.nextInt(C));
    labels.forEach((y, i) => (logits[i * C + y] = i % 2 ? 2 : logits[i * C + y]));
    acc.add(logits, labels, batch);
  }
  const m = acc.result();
  assert.ok(isSparseConfusion(m.confusion));
  assert.equal(m.confusion.classes, C);
  assert.ok(m.confusion.entries.length <= n);
  assert.equal(m.confusion.entries.reduce((s, e) => s + e[2], 0), n);
  assert.ok(Math.abs(m.top1Error - 0.5) < 0.02, `top-1 error ${m.top1Error}`);
  // as the trainers write them: summary.json pretty-printed, the checkpoint metadata compact
  const counts = Array.from({ length: C }, (_, c) => 1 + ((c * 7919) % 1000));
  const last = { ...withShots(m, counts), epoch: 89 };
  const summary = {
    status: "completed",
    data: { numClasses: C, trainCounts: counts, testCounts: confusionRowTotals(m.confusion) },
    last,
    best: last,
    final: last,
  };
  const json = JSON.stringify(summary, null, 2) + "\n";
  const noConfusion = JSON.stringify(
    { ...summary, last: { ...last, confusion: null }, best: null, final: null },
    null,
    2,
  );
  assert.ok(json.length < 2_000_000, `summary.json: ${json.length} characters`);
  const perMatrix = (json.length - noConfusion.length) / 3;
  assert.ok(perMatrix < 80 * n, `${perMatrix} characters per matrix (pretty-printed)`);
  const metadata = { last: JSON.stringify(last), best: JSON.stringify(last) };
  assert.ok(metadata.last.length < 200_000, `metadata "last": ${metadata.last.length}`);
  const file = encodeSafetensors([], metadata);
  assert.ok(file.length < 400_000, `checkpoint header: ${file.length} bytes`);
  // read back as a resume does: the same metrics
  assert.deepEqual(metricsFromJson(JSON.parse(metadata.last)), JSON.parse(metadata.last));
});
