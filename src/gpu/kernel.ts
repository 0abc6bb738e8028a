/**
 * One declaration per kernel. A {@linkcode KernelDecl} names the kernel's storage bindings, its
 * uniform fields, its workgroup size and the body of its entry point; from it come both the WGSL
 * header (binding declarations, the uniform struct `p`, the entry point's signature) and the
 * host-side packing of the uniform values, so a binding list or a uniform layout is never
 * written twice and can never disagree with the shader.
 *
 * Pipelines are cached by the runtime on the generated code itself (see `Gpu.dispatch`), so two
 * kernels can never share a pipeline by accident of a chosen name, and equal code is compiled
 * once.
 */
import type { BindingKind, BufferView, Gpu, Program } from "./runtime.ts";

/** WGSL scalar types a uniform field may have (each 4 bytes, packed in declaration order). */
export type ScalarType = "u32" | "i32" | "f32";

/** One storage binding: name, access, and WGSL type (default `array<f32>`). */
export type StorageDecl = readonly [name: string, access: "read" | "write", type?: string];

/** One uniform field: name and scalar type. */
export type UniformDecl<U extends string = string> = readonly [name: U, type: ScalarType];

/** Everything about one kernel: what it binds, what it is told, and what it does. */
export interface KernelDecl<U extends string = string> {
  /** Name used as the pipeline label and in error messages. */
  name: string;
  /** Storage buffers in binding order (bindings 0..n-1). */
  storage: readonly StorageDecl[];
  /** Fields of the uniform struct, read in WGSL as `p.NAME`; bound last. */
  uniforms?: readonly UniformDecl<U>[];
  /** Threads per workgroup: x, or [x, y, z]. */
  workgroupSize: number | readonly [number, number, number];
  /** WGSL placed before the entry point: constants, workgroup memory, helper functions. */
  helpers?: string;
  /**
   * Body of `fn main`, where the builtins are in scope as `gid` (global id), `lid` (local id),
   * `lidx` (local index), `wid` (workgroup id) and `nwg` (number of workgroups). For 1-D
   * dispatches split by {@linkcode grid1d}, `flatIndex(gid, nwg)` is the element index.
   */
  main: string;
  /**
   * Shape constants: each `p.NAME` that names one becomes the literal `VALUEu` in the generated
   * WGSL, so divisions and modulos by it compile to multiplies and shifts and bounds checks
   * fold; every distinct set of values is its own pipeline (the GEMM template specialises this
   * way). Unsigned integers only; a `p.NAME` that is neither a constant nor a uniform field is
   * an error.
   */
  constants?: Readonly<Record<string, number>>;
}

/** Total threads along x of a workgroup size. */
function sizeX(size: KernelDecl["workgroupSize"]): number {
  return typeof size === "number" ? size : size[0];
}

/** The WGSL of a declaration: header, helpers, entry point. */
export function kernelSource(decl: KernelDecl): string {
  const lines: string[] = [];
  const uniforms = decl.uniforms ?? [];
  if (uniforms.length > 0) {
    lines.push(`struct Params { ${uniforms.map(([n, t]) => `${n}: ${t}`).join(", ")} }`);
  }
  decl.storage.forEach(([name, access, type], i) => {
    const mode = access === "read" ? "read" : "read_write";
    lines.push(
      `@group(0) @binding(${i}) var<storage, ${mode}> ${name}: ${type ?? "array<f32>"};`,
    );
  });
  if (uniforms.length > 0) {
    lines.push(`@group(0) @binding(${decl.storage.length}) var<uniform> p: Params;`);
  }
  const size = typeof decl.workgroupSize === "number"
    ? `${decl.workgroupSize}`
    : decl.workgroupSize.join(", ");
  lines.push(
    `fn flatIndex(gid: vec3<u32>, nwg: vec3<u32>) -> u32 {`,
    `  return gid.x + gid.y * nwg.x * ${sizeX(decl.workgroupSize)}u;`,
    `}`,
  );
  if (decl.helpers) lines.push(decl.helpers.trim());
  lines.push(
    `@compute @workgroup_size(${size})`,
    `fn main(@builtin(global_invocation_id) gid: vec3<u32>,`,
    `        @builtin(local_invocation_id) lid: vec3<u32>,`,
    `        @builtin(local_invocation_index) lidx: u32,`,
    `        @builtin(workgroup_id) wid: vec3<u32>,`,
    `        @builtin(num_workgroups) nwg: vec3<u32>) {`,
    decl.main.trim().split("\n").map((l) => `  ${l.trimStart()}`).join("\n"),
    `}`,
    "",
  );
  const code = lines.join("\n");
  return decl.constants ? specialize(decl, decl.constants, code) : code;
}

/** Replaces every `p.NAME` of a constant by its literal (see {@linkcode KernelDecl.constants}). */
function specialize(decl: KernelDecl, consts: Readonly<Record<string, number>>, code: string) {
  const fields = new Set((decl.uniforms ?? []).map(([name]) => name));
  return code.replace(/\bp\.([A-Za-z_]\w*)/g, (use, name: string) => {
    if (fields.has(name)) return use;
    const v = consts[name];
    if (v === undefined || !Number.isInteger(v) || v < 0 || v > 0xffffffff) {
      throw new Error(`${decl.name}: no u32 value for shape constant p.${name}`);
    }
    return `${v}u`;
  });
}

/** A declared kernel: its program, uniform packing and dispatch. */
export class Kernel<U extends string = string> {
  /** The declaration it was made from. */
  readonly decl: KernelDecl<U>;
  /** What the runtime compiles and binds. */
  readonly program: Program;

  /** Generates the WGSL and binding signature of `decl`. */
  constructor(decl: KernelDecl<U>) {
    this.decl = decl;
    const kinds: BindingKind[] = decl.storage.map(([, access]) => access);
    if ((decl.uniforms ?? []).length > 0) kinds.push("uniform");
    this.program = { key: decl.name, code: kernelSource(decl), bindings: kinds };
  }

  /** Packs uniform values in declaration order; a cached uniform buffer of the runtime. */
  uniform(gpu: Gpu, values: Readonly<Record<U, number>>): BufferView {
    const fields = this.decl.uniforms ?? [];
    const buf = new ArrayBuffer(fields.length * 4);
    const view = new DataView(buf);
    fields.forEach(([name, type], i) => {
      const v = values[name];
      if (typeof v !== "number" || Number.isNaN(v)) {
        throw new Error(`${this.decl.name}: uniform ${name} has no value`);
      }
      if (type === "f32") view.setFloat32(i * 4, v, true);
      else if (!Number.isInteger(v) || v < (type === "u32" ? 0 : -(2 ** 31)) || v >= 2 ** 32) {
        throw new Error(`${this.decl.name}: uniform ${name} = ${v} is not a ${type}`);
      } else if (type === "u32") view.setUint32(i * 4, v, true);
      else view.setInt32(i * 4, v, true);
    });
    return gpu.uniform(buf);
  }

  /**
   * Records one dispatch: `storage` in declaration order, the uniform values (omit when the
   * kernel declares none), and the workgroup counts.
   */
  dispatch(
    gpu: Gpu,
    storage: BufferView[],
    uniforms: Readonly<Record<U, number>> | null,
    workgroups: [number, number?, number?],
  ): void {
    if (storage.length !== this.decl.storage.length) {
      throw new Error(
        `${this.decl.name}: ${this.decl.storage.length} storage bindings, got ${storage.length}`,
      );
    }
    const views = uniforms ? [...storage, this.uniform(gpu, uniforms)] : storage;
    gpu.dispatch(this.program, views, workgroups);
  }
}

/** Declares a kernel. */
export function kernel<U extends string>(decl: KernelDecl<U>): Kernel<U> {
  return new Kernel(decl);
}

/** A family of kernels: the kernel of a variant, and every kernel made so far. */
export interface KernelFamily<V, U extends string = string> {
  /** The kernel of `variant`, declared on first use. */
  (variant: V): Kernel<U>;
  /** The kernels made so far, in order of first use (for tests and profiles). */
  made(): Kernel<U>[];
}

/**
 * A family of kernels specialised on a variant (an expression, a direction, a shape): the
 * declaration is made once per distinct `key(variant)` and reused after that. The key only
 * saves re-generating code; pipelines are cached on the code, so a key can never make two
 * kernels share one.
 */
export function kernelFamily<V, U extends string>(
  make: (variant: V) => KernelDecl<U>,
  key: (variant: V) => string = (v) => JSON.stringify(v),
): KernelFamily<V, U> {
  const made = new Map<string, Kernel<U>>();
  const family = (variant: V) => {
    const k = key(variant);
    let kern = made.get(k);
    if (!kern) made.set(k, kern = new Kernel(make(variant)));
    return kern;
  };
  return Object.assign(family, { made: () => [...made.values()] });
}
