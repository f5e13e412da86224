/**
 * Import rules checked in CI (`pnpm check:imports`). Parsed with swc (TypeScript 7 has no compiler
 * API for tools); type-only imports count like any other.
 *
 * * no-circular: no module imports itself back through others.
 * * engine-folders-through-index, engine-through-index: each folder of the engine (daemon/src/engine/<part>/)
 *   offers the rest of the code what its index.ts exports; code outside the folder imports nothing else of it.
 * * engine-layers: the engine's parts depend on each other in one direction, in the order of ENGINE_LAYERS.
 */

/** The engine's parts in order: each may import those before it, none after it. */
const ENGINE_LAYERS = ["shared", "definitions", "dispatch", "runs", "failures", "leases|watch|schedules"];

module.exports = {
  forbidden: [
    {
      name: "no-circular",
      severity: "error",
      comment:
        "A part receives what it needs (a context, explicit dependencies) instead of importing back from its owner.",
      from: {},
      to: { circular: true },
    },
    {
      name: "engine-folders-through-index",
      severity: "error",
      comment: "A part of the engine imports another part only through that part's index.ts.",
      from: { path: "^daemon/src/engine/([^/]+)/" },
      to: {
        path: "^daemon/src/engine/[^/]+/",
        pathNot: "^daemon/src/engine/($1/|[^/]+/index\\.ts$)",
      },
    },
    {
      name: "engine-through-index",
      severity: "error",
      comment:
        "Code outside the engine's parts (engine.ts, the services, the daemon, tests) imports a part only through its index.ts.",
      from: { pathNot: "^daemon/src/engine/[^/]+/" },
      to: {
        path: "^daemon/src/engine/[^/]+/",
        pathNot: "^daemon/src/engine/[^/]+/index\\.ts$",
      },
    },
    ...ENGINE_LAYERS.slice(0, -1).map((layer, i) => ({
      name: "engine-layers",
      severity: "error",
      comment: `engine/${layer}/ imports none of the parts that build on it: ${ENGINE_LAYERS.slice(i + 1).join(", ")}.`,
      from: { path: `^daemon/src/engine/(${layer})/` },
      to: { path: `^daemon/src/engine/(${ENGINE_LAYERS.slice(i + 1).join("|")})/` },
    })),
  ],
  options: {
    parser: "swc",
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "node_modules|/gen/|/dist/" },
  },
};
