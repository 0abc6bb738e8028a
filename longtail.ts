/**
 * The long-tail experiment of tailgrad, built on the engine of `./mod.ts`: every method of the
 * paper's comparison (class-balanced weights, focal, LDAM-DRW, L2RW, Meta-Weight-Net and the
 * meta-learned `w_y + eps_i`) as one client of the fit loop, its configuration, presets and
 * command line, long-tailed splits with balanced dev sets, and run reports.
 *
 * @example Train a model from a script
 * ```ts
 * import { train } from "./longtail.ts";
 * const summary = await train({ preset: "default", method: "meta", out: "runs/meta" });
 * console.log(summary.last?.top1Error);
 * ```
 *
 * @module
 */
export * from "./src/train/mod.ts";
export * from "./src/data/split.ts";
export * from "./src/data/weights.ts";
export * from "./src/data/sampler.ts";
export * from "./src/data/lists.ts";
export * from "./src/data/inat.ts";
export * from "./src/report/mod.ts";
