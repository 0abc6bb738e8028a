/**
 * Float64 CPU reference for tailgrad's GPU kernels: ops (forward, backward, jvp), a CIFAR ResNet,
 * the meta-gradient, finite differences and a seeded PRNG. Test-only; no GPU code.
 */

export * from "./ops.ts";
export * from "./resnet.ts";
export * from "./meta.ts";
export * from "./fd.ts";
export * from "./rng.ts";
export * from "./nn_ops.ts";
export * from "./mwn.ts";
