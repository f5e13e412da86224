// Runs the `weft` command line as a user would, for the CLI tests.
import { execFile } from "node:child_process";
import { pathToFileURL } from "node:url";
import { REPO_ROOT } from "./support/index.js";

/** What a `weft` invocation did. */
export interface WeftRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** tsx's ESM loader by absolute URL, so that the CLI runs from any working directory. */
export const TSX_LOADER = pathToFileURL(`${REPO_ROOT}node_modules/tsx/dist/esm/index.mjs`).href;

/** `node --import tsx cli/src/main.ts …` as [command, args]. */
export function weftCommand(args: string[]): [string, string[]] {
  return [process.execPath, ["--import", TSX_LOADER, `${REPO_ROOT}cli/src/main.ts`, ...args]];
}

/** The test runner's environment without any WEFT_* variable or REDIS_URL (weft dev reads it). */
export function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("WEFT_") && k !== "REDIS_URL"),
  );
  return { ...env, NO_COLOR: "1", ...extra };
}

/** Runs `weft args…` (stdout and stderr are pipes, not a terminal) and collects what it printed. */
export function runWeft(args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<WeftRun> {
  const [node, argv] = weftCommand(args);
  return new Promise((resolve) => {
    execFile(
      node,
      argv,
      { cwd: REPO_ROOT, env: cleanEnv(env), timeout: timeoutMs },
      (err, stdout, stderr) => {
        const code = err === null ? 0 : typeof err.code === "number" ? err.code : null;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** A table's lines split into cells (columns are separated by two spaces or more). */
export function cells(text: string): string[][] {
  return text
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => l.split(/\s{2,}/));
}

/** Replaces timestamps with <time>. */
export function withoutTimes(text: string): string {
  return text.replace(/\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z/g, "<time>");
}

/** A duration as the CLI prints it (850ms, 1.2s, 3m05s). */
export const DURATION = /^\d+(ms|\.\d+s|m\d\ds|h\d\dm)$/;
