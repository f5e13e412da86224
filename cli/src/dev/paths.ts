import { fileURLToPath, pathToFileURL } from "node:url";

/** The repository root (weft dev runs weftd and the workers from the checkout), with a trailing slash. */
export const REPO_ROOT = fileURLToPath(new URL("../../../", import.meta.url));

/** tsx's ESM loader by absolute URL, so that children run TypeScript from any working directory. */
export const TSX_LOADER = pathToFileURL(`${REPO_ROOT}node_modules/tsx/dist/esm/index.mjs`).href;

/** `node --import <tsx> <script>` as [command, args]. */
export function nodeTs(script: string, args: string[]): [string, string[]] {
  return [process.execPath, ["--import", TSX_LOADER, `${REPO_ROOT}${script}`, ...args]];
}
