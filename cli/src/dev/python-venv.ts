import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { isAbsolute, join, relative } from "node:path";
import { promisify } from "node:util";
import { REPO_ROOT } from "./paths.js";
import { which } from "./which.js";

const run = promisify(execFile);

/** Where `weft dev` keeps the Python worker's virtualenv unless told otherwise (as .ci/run does). */
export const DEFAULT_PYTHON_VENV = `${REPO_ROOT}workers/python/.venv`;

/** The outcome of {@link ensurePythonVenv}: the venv's interpreter, or why there is none. */
export type VenvResult = { python: string } | { python: undefined; reason: string };

/** What {@link ensurePythonVenv} needs. */
export interface VenvContext {
  /** The virtualenv's folder. */
  venv: string;
  env: NodeJS.ProcessEnv;
  /** Prints a line of progress for the user. */
  say(line: string): void;
}

/** A path as the user would type it from the repository root. */
function shown(path: string): string {
  const rel = relative(REPO_ROOT, path);
  return rel === "" || rel.startsWith("..") || isAbsolute(rel) ? path : rel;
}

/** The commands that make the virtualenv, as a user would run them from the repository root. */
export function venvCommands(venv: string): string {
  const v = shown(venv);
  return `python3 -m venv ${v} && ${v}/bin/pip install -c workers/python/constraints.txt -e workers/python`;
}

/** Whether `python` imports the worker runtime and its dependencies. */
async function importsRuntime(python: string, env: NodeJS.ProcessEnv): Promise<boolean> {
  try {
    await run(python, ["-c", "import grpc, google.protobuf, weft_worker"], { env, timeout: 30_000 });
    return true;
  } catch {
    return false;
  }
}

/** The last line a failed command printed, for a one-line reason. */
function lastLine(err: unknown): string {
  const e = err as { stderr?: string; stdout?: string; message?: string; killed?: boolean };
  if (e.killed === true) return "timed out";
  const text = `${e.stderr ?? ""}`.trim() || `${e.stdout ?? ""}`.trim() || `${e.message ?? err}`;
  return text.split("\n").pop()?.trim() ?? "";
}

/**
 * The Python worker's virtualenv, made when it is missing or lacks the runtime's dependencies
 * (`python3 -m venv` and `pip install -e workers/python`, pinned by constraints.txt), saying what
 * it does. When it cannot be made, the reason says what to run.
 */
export async function ensurePythonVenv(ctx: VenvContext): Promise<VenvResult> {
  const python = join(ctx.venv, "bin", "python");
  if (existsSync(python) && (await importsRuntime(python, ctx.env))) return { python };
  const commands = venvCommands(ctx.venv);
  const python3 = await which("python3", ctx.env);
  if (python3 === undefined) {
    return {
      python: undefined,
      reason: `python3 not found on PATH; with Python 3.11 or later, run: ${commands}`,
    };
  }
  const started = Date.now();
  ctx.say(`making the Python worker's virtualenv (once, about a minute): ${commands}\n`);
  try {
    if (!existsSync(python)) await run(python3, ["-m", "venv", ctx.venv], { env: ctx.env, timeout: 120_000 });
    await run(
      join(ctx.venv, "bin", "pip"),
      [
        ...["install", "-q", "--disable-pip-version-check"],
        ...["-c", `${REPO_ROOT}workers/python/constraints.txt`, "-e", `${REPO_ROOT}workers/python`],
      ],
      { env: ctx.env, timeout: 600_000, cwd: REPO_ROOT },
    );
  } catch (err) {
    const reason = `could not make the virtualenv (${lastLine(err)}); run: ${commands}`;
    ctx.say(`  ${reason}\n`);
    return { python: undefined, reason };
  }
  if (!(await importsRuntime(python, ctx.env))) {
    const reason = `the virtualenv ${shown(ctx.venv)} does not import weft_worker; run: ${commands}`;
    ctx.say(`  ${reason}\n`);
    return { python: undefined, reason };
  }
  ctx.say(`  made ${shown(ctx.venv)} in ${Math.round((Date.now() - started) / 1000)} s\n`);
  return { python };
}
