/**
 * Checkpoints: a small safetensors reader/writer, atomic file replacement, and the PyTorch
 * state_dict naming of training checkpoints.
 *
 * @module
 */
export * from "./safetensors.ts";
export * from "./atomic.ts";
export * from "./checkpoint.ts";
