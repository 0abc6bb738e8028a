/**
 * `--pretrained FILE` checked before a large run writes anything or takes the GPU: the file
 * exists, is a safetensors file, and holds the tensors of the run's torchvision ResNet (names,
 * shapes, F32 or F64), with the rules of src/nn/torchvision.ts's loader: `num_batches_tracked`
 * ignored, and an `fc` of another class count (same feature size) kept at the model's own init.
 * The model's names and shapes come from its module tree alone, without a GPU.
 */
import { decodeSafetensors, type SafetensorsFile } from "../checkpoint/safetensors.ts";
import { describeError, UserError } from "../errors.ts";
import { moduleSpecs } from "../nn/module.ts";
import { type TorchvisionDepth, TorchvisionResNet } from "../nn/torchvision.ts";

/** The architecture a pretrained file must fit. */
export interface PretrainedTarget {
  /** torchvision ResNet depth. */
  depth: TorchvisionDepth;
  /** Channels of the first stage. */
  width: number;
  /** Classes of this run (an `fc` of another count is re-initialised, not an error). */
  numClasses: number;
}

/**
 * Reads `path` and checks it against `target` (see the module doc); returns the decoded file,
 * for src/nn/torchvision.ts's applyPretrained once the model exists. Throws a
 * {@linkcode UserError} naming --pretrained, the file and the tensors that do not fit.
 */
export async function readPretrained(
  path: string,
  target: PretrainedTarget,
): Promise<SafetensorsFile> {
  const fail = (what: string, hint: string, cause?: unknown): never => {
    throw new UserError(`--pretrained ${path} ${what}`, {
      file: path,
      flag: "--pretrained",
      hint,
      ...(cause === undefined ? {} : { cause }),
    });
  };
  const saveHint = "pass a torchvision ResNet state_dict saved with safetensors.torch.save_file";
  let bytes: Uint8Array;
  try {
    bytes = await Deno.readFile(path);
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) fail("does not exist", saveHint, e);
    return fail(`cannot be read (${describeError(e)})`, saveHint, e);
  }
  let file: SafetensorsFile;
  try {
    file = decodeSafetensors(bytes);
  } catch (e) {
    return fail(`is not a readable safetensors file (${(e as Error).message})`, saveHint, e);
  }
  const problems = pretrainedProblems(file, target);
  if (problems.length) {
    const shown = problems.slice(0, 6).map((p) => `\n  - ${p}`).join("");
    const more = problems.length > 6 ? `\n  - ... and ${problems.length - 6} more` : "";
    fail(
      `does not fit this run's ResNet-${target.depth} (width ${target.width}):${shown}${more}`,
      `pass a checkpoint of torchvision's resnet${target.depth} (width ${target.width}), or ` +
        "train from scratch without --pretrained",
    );
  }
  return file;
}

/** What in `file` does not fit `target`: unexpected, missing, misshapen or non-float tensors. */
function pretrainedProblems(file: SafetensorsFile, target: PretrainedTarget): string[] {
  const root = new TorchvisionResNet({
    depth: target.depth,
    width: target.width,
    numClasses: target.numClasses,
  });
  const specs = moduleSpecs(root);
  const want = [...specs.params, ...specs.buffers];
  const known = new Set(want.map((s) => s.name));
  const problems: string[] = [];
  for (const name of file.tensors.keys()) {
    if (!known.has(name) && !name.endsWith(".num_batches_tracked")) {
      problems.push(`holds ${name}, which the model does not have`);
    }
  }
  const fc = file.tensors.get("fc.weight");
  // another class count on the same features: fc keeps the model's init (as the loader does)
  const resetFc = fc !== undefined && fc.shape.length === 2 &&
    fc.shape[0] !== target.numClasses && fc.shape[1] === root.featureSize;
  for (const s of want) {
    if (resetFc && (s.name === "fc.weight" || s.name === "fc.bias")) continue;
    const t = file.tensors.get(s.name);
    if (!t) problems.push(`lacks ${s.name} [${s.shape}]`);
    else if (t.shape.join(",") !== s.shape.join(",")) {
      problems.push(`${s.name} is [${t.shape}], the model's is [${s.shape}]`);
    } else if (t.dtype !== "F32" && t.dtype !== "F64") {
      problems.push(`${s.name} is ${t.dtype}, expected F32 or F64 (convert with .float())`);
    }
  }
  return problems;
}
