/**
 * The train command line and the outputs of a run: errors listing valid flags and values
 * (never a stack trace), a non-finite loss stopping with its step and keeping the last good
 * checkpoint, a tiny run of every method writing every output, report.html rendering in
 * headless Chromium (export-meta-step: test/export_meta_step_test.ts).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { readCheckpoint } from "../src/checkpoint/mod.ts";
import { Gpu } from "../src/gpu/runtime.ts";
import { METHODS, OUTPUT_FILES, parseTrainArgs, resolveConfig, train } from "../src/train/mod.ts";
import { runTrain, syntheticData, tinyArgs, writeSyntheticIdx } from "./train_fixtures.ts";

const NO_STACK = /^\s+at /m;

Deno.test("cli: unknown flags and bad values list what is valid, without a stack trace", async () => {
  const root = await Deno.makeTempDir({ prefix: "tg-cli-" });
  try {
    const cases: [string[], RegExp[]][] = [
      [["--foo", "1"], [/unknown flag --foo/, /--dataset/, /--method/, /--max-per-class/]],
      [["--method", "nope"], [/invalid --method "nope"/, /meta-update-wy/, /cb-finetune/]],
      [["--model", "resnet9"], [/invalid --model/, /resnet8, resnet20, resnet32/]],
      [["--dataset", "imagenet"], [/fashion-mnist, mnist, cifar10, cifar100/]],
      [["--loss", "hinge"], [/ce, focal, ldam/]],
      [["--lookahead", "avg"], [/one of sum, mean/]],
      [["--preset", "fast"], [
        /invalid --preset "fast": expected one of default, medium, paper-cifar, or a large preset: imagenet-lt, places-lt, inat2017, inat2018 \(with --data-root DIR\)/,
      ]],
      // a large preset's flag without one: named as such, not as unknown
      [["--data-root", "/data/imagenet"], [
        /^error: --data-root needs one of the large presets \(imagenet-lt, places-lt, inat2017, inat2018\)/m,
        /to fix: add --preset NAME \(one of imagenet-lt, .*\) for a large run, or give the small datasets' folder with --data-dir/,
      ]],
      [["--depth=50"], [/^error: --depth needs one of the large presets/m, /to fix: add --preset/]],
      [["--no-freeze-backbone"], [/^error: --freeze-backbone needs one of the large presets/m]],
      [["--lr", "abc"], [/invalid --lr "abc": expected a number/]],
      [["--epochs", "-3"], [/invalid --epochs/]],
      [["--epochs", "0"], [/invalid --epochs 0: expected an integer >= 1/]],
      // a RangeError's stack trace before: a 1e20 or 2^32-long array of epochs
      [["--epochs", "99999999999999999999"], [
        /^error: invalid --epochs 99999999999999999999: too large \(an integer flag holds at most 9007199254740991\)$/m,
      ]],
      [["--epochs", "5000000000"], [
        /^error: invalid --epochs 5000000000: expected an integer in \[1, 100000\]$/m,
        /to fix: give --epochs an integer in \[1, 100000\]/,
      ]],
      [["--beta", "1.5"], [/invalid --beta 1.5: expected a number in \[0, 1\)/]],
      [["--lr-decay-epochs", "160,x"], [/comma-separated integers/]],
      [["--lr-decay-epochs", "180,160"], [/increasing epochs/]],
      [["--lr"], [/--lr needs a value: a number/]],
      [["--nesterov=yes"], [/--nesterov takes no value/]],
      [["stray"], [/unexpected argument "stray"/]],
      [["--method", "cb", "--loss", "ldam"], [/--loss ldam does not apply to --method cb/]],
    ];
    for (const [args, patterns] of cases) {
      const r = await runTrain([...args, "--out", join(root, "x")], root);
      assert.equal(r.code, 2, `${args.join(" ")}: exit ${r.code}\n${r.stderr}`);
      for (const p of patterns) assert.match(r.stderr, p, args.join(" "));
      assert.doesNotMatch(r.stderr, NO_STACK, args.join(" "));
      assert.match(r.stderr, /^error: /m);
    }
    const help = await runTrain(["--help"], root);
    assert.equal(help.code, 0);
    assert.match(help.stdout, /--lr-decay-epochs/);
    // the large presets: in --preset's help and a usage line of their own
    assert.match(help.stdout, /The large presets imagenet-lt, places-lt, inat2017, inat2018 train/);
    assert.match(
      help.stdout,
      /^large presets: deno task train --preset imagenet-lt\|places-lt\|inat2017\|inat2018 --data-root DIR/m,
    );
    const large = await runTrain(["--preset", "inat2018", "--help"], root);
    assert.equal(large.code, 0);
    assert.match(large.stdout, /--data-root <value>/);
    // in-process parsing
    const p = parseTrainArgs(["--lr", "1e-2", "--no-nesterov", "--max-per-class", "none"]);
    assert.deepEqual(p.options, { lr: 0.01, nesterov: false, maxPerClass: null });
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cli: a batch larger than the training set exits 2 before the GPU or --out", async () => {
  const root = await Deno.makeTempDir({ prefix: "tg-cli-batch-" });
  try {
    await writeSyntheticIdx(root);
    const out = join(root, "x");
    // tinyArgs with its --batch 16 replaced
    const withBatch = (b: number) =>
      tinyArgs(root, out).map((a, i, all) => all[i - 1] === "--batch" ? String(b) : a);
    const r = await runTrain(withBatch(100000), root);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /^error: --batch 100000 is larger than the long-tailed training set \((\d+) images\): no step could fill a batch$/m,
    );
    const n = Number(/training set \((\d+) images\)/.exec(r.stderr)![1]);
    assert.match(r.stderr, new RegExp(`^ {2}to fix: give --batch at most ${n}, or more`, "m"));
    assert.doesNotMatch(r.stderr, NO_STACK);
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "nothing written");
    // one past the set is refused too
    const over = await runTrain(withBatch(n + 1), root);
    assert.equal(over.code, 2, over.stderr);
    assert.match(over.stderr, new RegExp(`--batch ${n + 1} is larger than`));
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cli: a flag the method never reads exits 2 before any work, naming the fix", async () => {
  const root = await Deno.makeTempDir({ prefix: "tg-cli-noeffect-" });
  try {
    const out = join(root, "x");
    const r = await runTrain(["--method", "ce", "--tau", "2", "--out", out], root);
    assert.equal(r.code, 2, r.stderr);
    assert.match(
      r.stderr,
      /^error: --tau 2 has no effect with --method ce: it runs no meta step$/m,
    );
    assert.match(r.stderr, /^ {2}to fix: drop --tau$/m);
    assert.doesNotMatch(r.stderr, NO_STACK);
    await assert.rejects(() => Deno.stat(out), Deno.errors.NotFound, "nothing written");
    // the same flags the method reads, or at the preset's value, are taken
    const taken = (args: string[]) => resolveConfig(parseTrainArgs(args).options);
    assert.equal(taken(["--method", "meta", "--tau", "2"]).tau, 2);
    assert.equal(taken(["--method", "ce", "--tau", "0.01", "--meta-start", "3"]).metaStart, 3);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

Deno.test("cli: a non-finite loss stops with its step and keeps the last good checkpoint", async () => {
  const root = await Deno.makeTempDir({ prefix: "tg-nan-" });
  try {
    await writeSyntheticIdx(root);
    const out = join(root, "nan");
    // lr 0.1 for epoch 1, then 0.1 * 1e31 = 1e30
    const args = tinyArgs(root, out, ["--method", "ce", "--lr-decay-factor", "1e31"])
      .map((a, i, all) => (all[i - 1] === "--lr-decay-epochs" ? "1" : a))
      .filter((a, i, all) =>
        !(a === "--lr-decay-factor" && all[i + 1] === "0.1") &&
        !(a === "0.1" && all[i - 1] === "--lr-decay-factor")
      );
    const r = await runTrain(args, root);
    assert.equal(r.code, 1, r.stderr);
    const m = /error: non-finite loss at step (\d+) \(epoch 2, step (\d+) of the epoch\)/.exec(
      r.stderr,
    );
    assert.ok(m, r.stderr);
    assert.doesNotMatch(r.stderr, NO_STACK);
    assert.match(r.stderr, /kept the checkpoint of epoch 1/);
    const ck = await readCheckpoint(join(out, OUTPUT_FILES.checkpoint));
    assert.equal(ck!.metadata.epoch, "1");
    const w = ck!.tensors.get("conv1.weight")!.data as Float32Array;
    assert.ok(w.every(Number.isFinite));
    const summary = JSON.parse(await Deno.readTextFile(join(out, OUTPUT_FILES.summary)));
    assert.equal(summary.status, "stopped");
    assert.equal(summary.nonFinite.step, Number(m[1]));
    assert.equal(summary.nonFinite.stepInEpoch, Number(m[2]));
    assert.ok(summary.nonFinite.step > 10, "after epoch 1's 10 steps");
    // the kept checkpoint resumes (and stops again at the same step)
    const again = await runTrain([...args, "--resume"], root);
    assert.equal(again.code, 1);
    assert.match(again.stderr, new RegExp(`non-finite loss at step ${m[1]} `));
    // an existing run is not overwritten without --resume
    const clash = await runTrain(args, root);
    assert.equal(clash.code, 2);
    assert.match(clash.stderr, /already holds a run/);
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});

/** "chromium" when it is installed and this test may run it, else null. */
async function chromiumPath(): Promise<string | null> {
  for (const name of ["chromium", "chromium-browser", "google-chrome"]) {
    const granted = await Deno.permissions.query({ name: "run", command: name });
    if (granted.state !== "granted") continue;
    try {
      const r = await new Deno.Command(name, {
        args: ["--version"],
        stdout: "null",
        stderr: "null",
      })
        .output();
      if (r.success) return name;
    } catch { /* not installed */ }
  }
  return null;
}

/** Loads a report in headless Chromium with a checker that re-parses every SVG as XML. */
async function renderInChromium(chromium: string, reportPath: string, dir: string) {
  const html = await Deno.readTextFile(reportPath);
  const checker = `<script>
window.addEventListener("error", (e) => { document.title = "JSERROR " + e.message; });
addEventListener("load", () => {
  const bad = [];
  for (const svg of document.querySelectorAll("svg")) {
    const doc = new DOMParser().parseFromString(svg.outerHTML, "image/svg+xml");
    if (doc.querySelector("parsererror")) bad.push(svg.getAttribute("aria-label"));
    const box = svg.getBBox();
    if (!(box.width > 0 && box.height > 0)) bad.push("empty " + svg.getAttribute("aria-label"));
  }
  document.title = "SVGCHECK " + document.querySelectorAll("svg").length + " " + JSON.stringify(bad);
});
</script>`;
  const page = join(dir, "check.html");
  await Deno.writeTextFile(page, html.replace("</body>", `${checker}</body>`));
  const r = await new Deno.Command(chromium, {
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--enable-logging=stderr",
      "--v=0",
      "--virtual-time-budget=5000",
      "--dump-dom",
      `file://${page}`,
    ],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { code: r.code, dom: dec.decode(r.stdout), stderr: dec.decode(r.stderr) };
}

Deno.test({
  name: "methods: a tiny run of every method completes and writes every output",
  sanitizeResources: false,
  fn: async () => {
    const root = await Deno.makeTempDir({ prefix: "tg-methods-" });
    const gpu = await Gpu.create();
    const chromium = await chromiumPath();
    try {
      const data = syntheticData();
      for (const method of METHODS) {
        const out = join(root, method);
        const summary = await train({
          data,
          gpu,
          method,
          dataset: "mnist",
          imbalance: 10,
          maxPerClass: 20,
          testPerClass: 5,
          batch: 16,
          epochs: 2,
          metaStart: 1,
          lrDecayEpochs: [1],
          lrDecayFactor: 0.1,
          out,
          progress: null,
        });
        assert.equal(summary.status, "completed", method);
        assert.equal(summary.epochsDone, 2);
        for (const f of Object.values(OUTPUT_FILES)) {
          assert.ok((await Deno.stat(join(out, f))).size > 0, `${method}: ${f}`);
        }
        const lines = (await Deno.readTextFile(join(out, OUTPUT_FILES.metrics))).trim().split("\n");
        assert.equal(lines.length, 2);
        const last = JSON.parse(lines[1]);
        assert.equal(last.test.perClassAccuracy.length, 10);
        assert.ok(Number.isFinite(summary.last!.top1Error));
        assert.ok(summary.best!.top1Error <= summary.last!.top1Error);
        const confusion = summary.last!.confusion;
        assert.ok(Array.isArray(confusion), "10 classes: the confusion matrix is dense rows");
        assert.equal(confusion.flat().reduce((a, b) => a + b, 0), 50);
        const ck = await readCheckpoint(join(out, OUTPUT_FILES.checkpoint));
        assert.ok(ck!.tensors.has("layer1.0.bn1.running_mean"));
        assert.ok(ck!.tensors.has("optimizer.momentum.conv1.weight"));
        const phase1 = last.phase;
        if (
          ["meta", "l2rw", "l2rw-pretrain", "l2rw-init-wy", "l2rw-wy-eps", "meta-update-wy"]
            .includes(method)
        ) {
          assert.equal(phase1, "meta", method);
          // every image of every meta epoch once (a partial last batch: N mod 16 of them)
          const metaEpochs = lines.map((l) => JSON.parse(l)).filter((h) => h.phase === "meta");
          const metaImages = metaEpochs.reduce((n, h) => n + h.images, 0);
          assert.equal(metaImages, summary.data.trainTotal * metaEpochs.length);
          assert.equal(summary.meta!.count.reduce((a, b) => a + b, 0), metaImages);
          assert.ok(summary.meta!.meanEps.every((v) => v !== null && Number.isFinite(v)), method);
        } else if (method === "mwn") {
          assert.equal(phase1, "mwn");
          assert.ok(ck!.tensors.has("mwn.fc2.weight"));
        } else {
          assert.equal(phase1, "plain", method);
        }
        if (method === "ldam" || method === "ldam-drw") {
          assert.ok(summary.margins && Math.max(...summary.margins) === 0.5);
          assert.ok(!ck!.tensors.has("linear.bias"), "cosine classifier has no bias");
        }
        if (method === "meta-update-wy") assert.ok(summary.finalClassWeights);
        if (method === "cb-finetune") {
          // stage 2 iterates the balanced subset: tail count (2) x 10 classes -> 2 batches of 16
          assert.equal(last.steps, 2);
        }
        if (chromium && (method === "meta" || method === "mwn")) {
          const r = await renderInChromium(chromium, join(out, OUTPUT_FILES.report), root);
          assert.equal(r.code, 0, r.stderr.slice(-2000));
          assert.doesNotMatch(r.stderr, /Uncaught|CONSOLE.*error/i);
          const title = /<title>([^<]*)<\/title>/.exec(r.dom)?.[1] ?? "";
          assert.match(title, /^SVGCHECK \d+ \[\]$/, title);
          assert.ok(Number(title.split(" ")[1]) >= 6, title);
          assert.match(r.dom, /Per-class test accuracy/);
          assert.match(r.dom, /Confusion matrix/);
          assert.match(r.dom, /Per-class mean (eps|final weight) over the epochs/);
        }
      }
      if (!chromium) {
        // CI installs chromium: there a missing browser is a failure, not a skip
        assert.ok(!Deno.env.get("CI"), "CI is set but chromium cannot be run");
        console.warn(
          "chromium not installed (or not allowed to run): report rendering not checked",
        );
      }
    } finally {
      gpu.dispose();
      await Deno.remove(root, { recursive: true });
    }
  },
});
