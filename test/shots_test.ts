/** Many/medium/few-shot accuracy (src/engine/metrics.ts): thresholds, empty groups, untested classes. */
import assert from "node:assert/strict";
import { MetricAccumulator, shotGroups, withShots } from "../src/engine/metrics.ts";

Deno.test("shotGroups: > 100 many, 20-100 medium, < 20 few; means of per-class accuracy", () => {
  const counts = [500, 101, 100, 20, 19, 1];
  const acc = [0.9, 0.7, 0.5, 0.3, 0.2, 0.0];
  const s = shotGroups(acc, counts);
  assert.equal(s.many, (0.9 + 0.7) / 2);
  assert.equal(s.medium, (0.5 + 0.3) / 2);
  assert.equal(s.few, (0.2 + 0.0) / 2);
  assert.deepEqual(s.classes, { many: 2, medium: 2, few: 2 });
  // a class without test examples is left out; an empty group is null
  const t = shotGroups(acc, counts, [1, 1, 0, 0, 1, 1]);
  assert.equal(t.medium, null);
  assert.deepEqual(t.classes, { many: 2, medium: 0, few: 2 });
  assert.throws(() => shotGroups([1], [1, 2]), /1 class accuracies, 2 counts/);
});

Deno.test("withShots: groups from an accumulator's confusion counts", () => {
  const acc = new MetricAccumulator(3);
  // class 0 right twice, class 1 once right once wrong, class 2 never tested
  acc.add(Float32Array.from([3, 0, 0, 2, 1, 0, 0, 2, 1, 1, 0, 3]), [0, 0, 1, 1], 4);
  const m = withShots(acc.result(), [200, 50, 5]);
  assert.deepEqual(m.shots?.classes, { many: 1, medium: 1, few: 0 });
  assert.equal(m.shots?.many, 1);
  assert.equal(m.shots?.medium, 0.5);
  assert.equal(m.shots?.few, null);
});
