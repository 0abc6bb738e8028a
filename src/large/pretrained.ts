/**
 * `--pretrained FILE` checked before a large run writes anything or takes the GPU: the file
 * exists, is a safetensors file, and holds the tensors of the run's torchvision ResNet, by
 * src/nn/torchvision.ts's {@linkcode checkPretrained} (the same check its loader makes).
 */
import type { SafetensorsFile } from "../checkpoint/safetensors.ts";
import { checkPretrained, readPretrainedFile, type TorchvisionConfig } from "../nn/torchvision.ts";

/**
 * Reads `path` and checks it against the architecture `arch`; returns the decoded file, for
 * src/nn/torchvision.ts's applyPretrained once the model exists. Throws a UserError naming
 * --pretrained, the file and the tensors that do not fit.
 */
export async function readPretrained(
  path: string,
  arch: Pick<TorchvisionConfig, "depth" | "width" | "numClasses">,
): Promise<SafetensorsFile> {
  const file = await readPretrainedFile(path);
  // the fields by name: the caller passes its whole run config
  checkPretrained(file, path, {
    depth: arch.depth,
    width: arch.width,
    numClasses: arch.numClasses,
  });
  return file;
}
