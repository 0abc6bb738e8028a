/**
 * The data layer: readers (IDX, CIFAR-10/100), finding and verified downloading of datasets,
 * long-tailed splits, class weights, seeded sampling, batch gathering, and GPU augmentation.
 *
 * @module
 */
export * from "./readers.ts";
export * from "../random.ts";
export * from "./split.ts";
export * from "./weights.ts";
export * from "./sampler.ts";
export * from "./lists.ts";
export * from "./inat.ts";
