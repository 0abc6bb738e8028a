/**
 * Kernel plumbing of the training step: the running loss sum and the meta-weight rules, used by
 * the step engine (src/engine/step.ts) and the meta re-weighting (src/engine/meta.ts).
 */
import type { Gpu, Program } from "../gpu/runtime.ts";
import { bind, type Tensor } from "../tensor.ts";
import { type MetaWeightRule, metaWeightSource } from "../../shaders/meta.ts";
import { lossSumSource } from "../../shaders/train.ts";

export { accumulateLoss, metaWeights };

let lossSumProgram: Program | null = null;
/** lossSum[0] += sum(loss), lossSum[1] += |B|, in index order (one thread). */
function accumulateLoss(gpu: Gpu, loss: Tensor, into: Tensor): void {
  lossSumProgram ??= {
    key: "loss-sum",
    code: lossSumSource(),
    bindings: ["read", "write", "uniform"],
  };
  gpu.dispatch(
    lossSumProgram,
    [bind(loss), bind(into), gpu.uniform(new Uint32Array([loss.size]))],
    [1],
  );
}

const metaPrograms = new Map<string, Program>();
/**
 * eps_i = c * ldot_i; final weights by rule; seed = final / |B| (or the normalised weights
 * for L2RW-style rules, whose loss is a weighted sum).
 */
function metaWeights(
  gpu: Gpu,
  rule: MetaWeightRule,
  w: Tensor,
  ldot: Tensor,
  labels: Tensor,
  classW: Tensor,
  eps: Tensor,
  final: Tensor,
  seed: Tensor,
  o: { c: number; batch: number },
): void {
  let prog = metaPrograms.get(rule);
  if (!prog) {
    prog = {
      key: `meta-weights:${rule}`,
      code: metaWeightSource(rule),
      bindings: ["read", "read", "read", "write", "write", "write", "write", "uniform"],
    };
    metaPrograms.set(rule, prog);
  }
  const buf = new ArrayBuffer(8);
  new Uint32Array(buf, 0, 1)[0] = o.batch;
  new Float32Array(buf, 4, 1)[0] = o.c;
  gpu.dispatch(
    prog,
    [
      bind(w),
      bind(ldot),
      bind(labels),
      bind(classW),
      bind(eps),
      bind(final),
      bind(seed),
      gpu.uniform(buf),
    ],
    [1],
  );
}
