/** The baselines' classifier initialisations (src/nn/init.ts): values, ranges, determinism. */
import assert from "node:assert/strict";
import { priorBias, torchLinearBias, unitNormRows } from "../src/nn/init.ts";
import { Rng } from "../src/random.ts";

Deno.test("unitNormRows: uniform(-1, 1) rows rescaled to unit norm, seeded", () => {
  const rows = 10, cols = 64;
  const w = unitNormRows(new Rng(7, "init"), rows, cols);
  assert.equal(w.length, rows * cols);
  // the same draws, by hand: row-major uniform(-1, 1), each row divided by its norm
  const rng = new Rng(7, "init");
  for (let r = 0; r < rows; r++) {
    const u = Array.from({ length: cols }, () => 2 * rng.nextFloat() - 1);
    const norm = Math.hypot(...u);
    let sq = 0;
    for (let c = 0; c < cols; c++) {
      const v = w[r * cols + c];
      assert.ok(Math.abs(v - u[c] / norm) <= 1e-7, `row ${r} col ${c}: ${v} vs ${u[c] / norm}`);
      sq += v * v;
    }
    assert.ok(Math.abs(Math.sqrt(sq) - 1) < 1e-6, `row ${r} norm ${Math.sqrt(sq)}`);
  }
  assert.deepEqual(unitNormRows(new Rng(7, "init"), rows, cols), w, "same seed, same bits");
  assert.notDeepEqual(unitNormRows(new Rng(8, "init"), rows, cols), w, "another seed differs");
  assert.throws(() => unitNormRows(new Rng(1), 0, 64), /rows must be a positive integer/);
});

Deno.test("torchLinearBias: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), seeded", () => {
  const n = 4000;
  const b = torchLinearBias(new Rng(3), 64, n);
  const bound = 0.125;
  let mn = Infinity, mx = -Infinity, sum = 0, sq = 0;
  for (const v of b) {
    mn = Math.min(mn, v);
    mx = Math.max(mx, v);
    sum += v;
    sq += v * v;
  }
  assert.ok(mn >= -bound && mx <= bound, `range [${mn}, ${mx}] outside +-${bound}`);
  assert.ok(mn < -0.99 * bound && mx > 0.99 * bound, `range [${mn}, ${mx}] does not fill +-0.125`);
  // uniform on [-a, a]: mean 0 (sd a / sqrt(3n) = 1.1e-3), variance a^2 / 3 = 5.21e-3
  assert.ok(Math.abs(sum / n) < 5e-3, `mean ${sum / n}`);
  assert.ok(Math.abs(sq / n - bound ** 2 / 3) < 3e-4, `variance ${sq / n}`);
  assert.deepEqual(torchLinearBias(new Rng(3), 64, n), b);
  // fan_in 10: bound 1/sqrt(10)
  const c = torchLinearBias(new Rng(4), 10, 100);
  assert.ok(c.every((v) => Math.abs(v) <= 1 / Math.sqrt(10)));
  assert.ok(c.some((v) => Math.abs(v) > 0.9 / Math.sqrt(10)));
  assert.throws(() => torchLinearBias(new Rng(1), 0, 3), /fanIn must be a positive integer/);
});

Deno.test("priorBias: Cui's -log((1 - pi) / pi), pi = 1 / C by default", () => {
  const ten = priorBias(10);
  assert.equal(ten.length, 10);
  assert.ok(ten.every((v) => Math.abs(v - -Math.log(9)) < 1e-6), `${ten[0]} vs -log 9`);
  assert.ok(Math.abs(ten[0] - -2.1972246) < 1e-6);
  const hundred = priorBias(100);
  assert.ok(Math.abs(hundred[0] - -4.5951199) < 1e-6, `${hundred[0]} vs -log 99`);
  // each sigmoid starts at the prior
  assert.ok(Math.abs(1 / (1 + Math.exp(-hundred[0])) - 0.01) < 1e-8);
  const focalPrior = priorBias(100, 0.1);
  assert.ok(Math.abs(focalPrior[0] - -Math.log(9)) < 1e-6, "explicit prior 0.1");
  assert.throws(() => priorBias(1), /prior must lie in \(0, 1\).*C >= 2/);
  assert.throws(() => priorBias(10, 0), /prior must lie in \(0, 1\)/);
  assert.throws(() => priorBias(10, 1.5), /prior must lie in \(0, 1\)/);
});
