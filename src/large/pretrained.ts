/**
 * `--pretrained FILE` checked before a large run writes anything or takes the GPU: the file
 * exists, is a safetensors file, and holds the tensors of the run's torchvision ResNet, by
 * src/nn/torchvision.ts's {@linkcode checkPretrained} (the same check its loader makes).
 */
import { decodeSafetensors, type SafetensorsFile } from "../checkpoint/safetensors.ts";
import { describeError, UserError } from "../errors.ts";
import { checkPretrained, type TorchvisionConfig } from "../nn/torchvision.ts";

/**
 * Reads `path` and checks it against the architecture `arch`; returns the decoded file, for
 * src/nn/torchvision.ts's applyPretrained once the model exists. Throws a {@linkcode UserError}
 * naming --pretrained, the file and the tensors that do not fit.
 */
export async function readPretrained(
  path: string,
  arch: Pick<TorchvisionConfig, "depth" | "width" | "numClasses">,
): Promise<SafetensorsFile> {
  const fail = (what: string, cause: unknown): never => {
    throw new UserError(`--pretrained ${path} ${what}`, {
      file: path,
      flag: "--pretrained",
      hint: "pass a torchvision ResNet state_dict saved with safetensors.torch.save_file",
      cause,
    });
  };
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail("does not exist", e);
    return fail(`cannot be read (${describeError(e)})`, e);
  }
  let file: SafetensorsFile;
  try {
    file = decodeSafetensors(bytes);
  } catch (e) {
    return fail(`is not a readable safetensors file (${(e as Error).message})`, e);
  }
  // the fields by name: the caller passes its whole run config
  checkPretrained(file, path, {
    depth: arch.depth,
    width: arch.width,
    numClasses: arch.numClasses,
  });
  return file;
}
