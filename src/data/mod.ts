/**
 * The data layer: readers (IDX, CIFAR-10/100), finding and verified downloading of datasets,
 * long-tailed splits, class weights, seeded sampling, batch gathering, and GPU augmentation.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./dataset.ts";
export * from "../random.ts";
export * from "./gzip.ts";
export * from "./idx.ts";
export * from "./cifar.ts";
export * from "./tar.ts";
export * from "./sources.ts";
export * from "./download.ts";
export * from "./load.ts";
export * from "./split.ts";
export * from "./weights.ts";
export * from "./sampler.ts";
export * from "./batcher.ts";
export * from "./augment.ts";
