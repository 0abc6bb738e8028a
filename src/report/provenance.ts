/**
 * Where a report came from: the commit of the tailgrad checkout that produced it (read from its
 * .git folder, no `git` process), the time it was written and the command line.
 */
import { dirname, join } from "node:path";

/** The commit, date and command line shown in report.html. */
export interface Provenance {
  /** Commit hash of the checkout the code runs from; null when unknown (no .git, no access). */
  commit: string | null;
  /** ISO 8601 time the report was written. */
  date: string;
  /** The command line of the process, e.g. "deno run scripts/train.ts --epochs 3". */
  command: string;
}

function read(path: string): string | null {
  try {
    return Deno.readTextFileSync(path).trim();
  } catch {
    return null;
  }
}

/** The commit checked out in the repository holding `dir` (worktrees and packed refs too). */
export function gitCommit(dir: string): string | null {
  for (let d = dir;; d = dirname(d)) {
    const dotGit = join(d, ".git");
    let gitDir: string | null = null;
    const asFile = read(dotGit);
    if (asFile?.startsWith("gitdir: ")) gitDir = asFile.slice(8).trim();
    else if (read(join(dotGit, "HEAD")) !== null) gitDir = dotGit;
    if (gitDir) return resolveHead(gitDir);
    if (dirname(d) === d) return null;
  }
}

function resolveHead(gitDir: string): string | null {
  const head = read(join(gitDir, "HEAD"));
  if (!head) return null;
  if (/^[0-9a-f]{40}$/.test(head)) return head;
  const ref = /^ref: (.+)$/.exec(head)?.[1];
  if (!ref) return null;
  // a worktree's refs live in the main repository's folder (its "commondir")
  const common = read(join(gitDir, "commondir"));
  const dirs = [gitDir, ...(common ? [join(gitDir, common)] : [])];
  for (const d of dirs) {
    const loose = read(join(d, ref));
    if (loose && /^[0-9a-f]{40}$/.test(loose)) return loose;
    const packed = read(join(d, "packed-refs"));
    const line = packed?.split("\n").find((l) => l.endsWith(` ${ref}`));
    if (line) return line.slice(0, 40);
  }
  return null;
}

function quote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", `'\\''`)}'`;
}

/** The provenance of a report written now by this process. */
export function currentProvenance(): Provenance {
  const here = new URL(".", import.meta.url);
  const commit = here.protocol === "file:" ? gitCommit(here.pathname) : null;
  let main = "";
  try {
    const url = new URL(Deno.mainModule);
    main = url.protocol === "file:" ? url.pathname : url.href;
    const cwd = Deno.cwd();
    if (main.startsWith(cwd + "/")) main = main.slice(cwd.length + 1);
  } catch {
    main = "(unknown script)";
  }
  const command = ["deno", "run", main, ...Deno.args].map(quote).join(" ");
  return { commit, date: new Date().toISOString(), command };
}
