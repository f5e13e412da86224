import { fileURLToPath, pathToFileURL } from "node:url";

/** The repository root, with a trailing slash. */
export const REPO_ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** bench/, with a trailing slash. */
export const BENCH_DIR = `${REPO_ROOT}bench/`;

/** tsx's ESM loader by absolute URL, so that child processes run TypeScript from any directory. */
export const TSX_LOADER = pathToFileURL(`${REPO_ROOT}node_modules/tsx/dist/esm/index.mjs`).href;
