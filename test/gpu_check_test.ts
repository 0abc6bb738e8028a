/**
 * The one-shot GPU check (scripts/gpu_check.ts) end to end in its CI-sized form: every phase
 * runs, the JSON result holds what each measured, and the figures are sane.
 */
import assert from "node:assert/strict";

Deno.test({
  name: "gpu-check --quick runs every phase end to end and writes its JSON",
  sanitizeResources: false,
  fn: async () => {
    const out = await Deno.makeTempFile({ prefix: "tailgrad-gpu-check-", suffix: ".json" });
    try {
      const run = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--allow-read",
          "--allow-write=/tmp",
          "--allow-env=DENO_WEBGPU_BACKEND,TAILGRAD_DATA,TAILGRAD_DEBUG",
          "--allow-run",
          "--allow-sys=loadavg",
          "scripts/gpu_check.ts",
          "--quick",
          `--out=${out}`,
        ],
        env: { NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
      const log = new TextDecoder().decode(run.stdout) + new TextDecoder().decode(run.stderr);
      const r = JSON.parse(await Deno.readTextFile(out));
      assert.equal(run.code, 0, `gpu-check failed:\n${log.slice(-2000)}`);
      assert.equal(r.ok, true);
      assert.equal(r.kind, "quick");
      for (const name of ["adapter", "tests", "kernels", "families", "steps"]) {
        assert.equal(
          r.phases[name]?.status,
          "ok",
          `phase ${name}: ${JSON.stringify(r.phases[name])}`,
        );
      }
      assert.ok(r.adapter.description.length > 0);
      assert.ok(r.adapter.engineLimits.maxStorageBufferBindingSize.device >= 128 * 2 ** 20);
      assert.ok(r.tests.passed >= 10, `${r.tests.passed} tests passed`);
      assert.equal(r.tests.failed, 0);
      assert.equal(r.kernels.cases.length, 4);
      for (const c of r.kernels.cases) assert.ok(c.gflops > 0 && Number.isFinite(c.gflops), c.name);
      assert.equal(r.families.register.length, 1);
      assert.equal(r.families.workgroup.length, 1);
      const [s] = r.steps;
      assert.equal(s.model, "ResNet-8");
      assert.ok(s.plain.ms > 0 && s.meta.ms > 0);
      assert.ok(s.metaOverPlain > 1, `meta / plain ${s.metaOverPlain}`);
      assert.equal(s.warmStepsGpuObjectsCreated, 0, "warm steps created GPU objects");
      // the bound counts only what any implementation must hold: the engine holds at least it
      for (const kind of ["plain", "meta"]) {
        const m = s[`${kind}Memory`];
        assert.ok(m.ratio >= 1 && m.ratio < 10, `${kind} memory ${m.ratio}x the lower bound`);
      }
    } finally {
      await Deno.remove(out);
    }
  },
});
