/**
 * The dataset readers of the engine's public surface: IDX (MNIST, Fashion-MNIST) and CIFAR
 * files, gzip and tar, finding installed datasets and verified downloads, batch gathering and
 * GPU augmentation. Long-tailed splits and class weights belong to the long-tail entry point.
 *
 * @module
 */
export * from "./errors.ts";
export * from "./dataset.ts";
export * from "./gzip.ts";
export * from "./idx.ts";
export * from "./cifar.ts";
export * from "./tar.ts";
export * from "./sources.ts";
export * from "./download.ts";
export * from "./load.ts";
export * from "./batcher.ts";
export * from "./augment.ts";
export * from "./jpeg/decode.ts";
export * from "./jpeg/pool.ts";
export * from "./jpeg/loader.ts";
export * from "./jpeg/transforms.ts";
