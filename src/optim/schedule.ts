/**
 * Learning-rate schedules as pure host functions of where training is: the epoch (0-based),
 * the step within it and the number of steps per epoch. Being pure, a schedule is resumed
 * exactly from a checkpoint's position and costs the GPU nothing (the optimizers read the
 * rate from a storage slot, see src/optim/step_values.ts).
 *
 * @example Cosine decay over 30 epochs after a 500-step linear warm-up
 * ```ts
 * const lr = linearWarmup(cosineLr(0.1, { epochs: 30, floor: 1e-4 }), { steps: 500 });
 * lr({ epoch: 0, step: 0, stepsPerEpoch: 100 }); // 0.1 / 3
 * ```
 */

/**
 * Where training is.
 *
 * @category Core
 */
export interface SchedulePoint {
  /** Epoch, from 0. */
  epoch: number;
  /** Step within the epoch, from 0. */
  step: number;
  /** Steps in each epoch. */
  stepsPerEpoch: number;
}

/**
 * A learning-rate schedule: the rate to use at a point of training.
 *
 * @category Core
 */
export type Schedule = (at: SchedulePoint) => number;

/**
 * Steps taken before `at` over the whole run: epoch * stepsPerEpoch + step.
 *
 * @category Core
 */
export function globalStep(at: SchedulePoint): number {
  return at.epoch * at.stepsPerEpoch + at.step;
}

/**
 * The point of global step `step` (from 0) with `stepsPerEpoch` steps per epoch.
 *
 * @category Core
 */
export function pointAt(step: number, stepsPerEpoch: number): SchedulePoint {
  return { epoch: Math.floor(step / stepsPerEpoch), step: step % stepsPerEpoch, stepsPerEpoch };
}

function check(what: string, value: number, ok: boolean, expected: string): void {
  if (!ok) throw new Error(`schedule: ${what} = ${value}, expected ${expected}`);
}

function checkRate(lr: number): void {
  check("lr", lr, Number.isFinite(lr) && lr >= 0, "a finite number >= 0");
}

/**
 * The same rate throughout.
 *
 * @category Core
 */
export function constantLr(lr: number): Schedule {
  checkRate(lr);
  return () => lr;
}

/**
 * lr * gamma^floor(epoch / every) (PyTorch's StepLR, stepped per epoch).
 *
 * @category Core
 */
export function stepLr(lr: number, o: { every: number; gamma: number }): Schedule {
  checkRate(lr);
  check("every", o.every, Number.isInteger(o.every) && o.every >= 1, "an integer >= 1");
  check("gamma", o.gamma, o.gamma > 0, "a number > 0");
  return (at) => lr * o.gamma ** Math.floor(at.epoch / o.every);
}

/**
 * lr * gamma^(number of milestones <= epoch) (PyTorch's MultiStepLR, stepped per epoch);
 * milestones are increasing epochs.
 *
 * @category Core
 */
export function multiStepLr(lr: number, o: { milestones: number[]; gamma: number }): Schedule {
  checkRate(lr);
  check("gamma", o.gamma, o.gamma > 0, "a number > 0");
  o.milestones.forEach((m, i) => {
    const ok = Number.isInteger(m) && m >= 0 && (i === 0 || m > o.milestones[i - 1]);
    check(`milestones[${i}]`, m, ok, "increasing integer epochs >= 0");
  });
  const milestones = [...o.milestones];
  return (at) => lr * o.gamma ** milestones.filter((m) => at.epoch >= m).length;
}

/**
 * Cosine decay from lr to `floor` over `epochs` (PyTorch's CosineAnnealingLR with
 * T_max = epochs and eta_min = floor), then `floor`. Per epoch by default; with `perStep` the
 * position is fractional (epoch + step / stepsPerEpoch), so the rate falls smoothly.
 *
 * @category Core
 */
export function cosineLr(
  lr: number,
  o: { epochs: number; floor?: number; perStep?: boolean },
): Schedule {
  checkRate(lr);
  const floor = o.floor ?? 0;
  check("epochs", o.epochs, Number.isInteger(o.epochs) && o.epochs >= 1, "an integer >= 1");
  check("floor", floor, floor >= 0 && floor <= lr, `a number in [0, lr = ${lr}]`);
  return (at) => {
    const t = o.perStep ? at.epoch + at.step / at.stepsPerEpoch : at.epoch;
    const c = Math.min(t, o.epochs) / o.epochs;
    return floor + (lr - floor) * (1 + Math.cos(Math.PI * c)) / 2;
  };
}

/**
 * Linear warm-up in front of any schedule: the rate is multiplied by a factor rising linearly
 * per step from `startFactor` (default 1/3) at step 0 to 1 after `steps` steps, or after
 * `epochs` epochs (PyTorch's LinearLR with total_iters = the warm-up length, composed).
 *
 * @category Core
 */
export function linearWarmup(
  schedule: Schedule,
  o: { steps?: number; epochs?: number; startFactor?: number },
): Schedule {
  const start = o.startFactor ?? 1 / 3;
  check("startFactor", start, start >= 0 && start <= 1, "a number in [0, 1]");
  if ((o.steps === undefined) === (o.epochs === undefined)) {
    throw new Error("schedule: linearWarmup needs exactly one of steps or epochs");
  }
  const length = o.steps ?? o.epochs!;
  check(
    o.steps !== undefined ? "steps" : "epochs",
    length,
    Number.isInteger(length) && length >= 1,
    "an integer >= 1",
  );
  return (at) => {
    const total = o.steps ?? o.epochs! * at.stepsPerEpoch;
    const rise = Math.min(globalStep(at), total) / total;
    return schedule(at) * (start + (1 - start) * rise);
  };
}
