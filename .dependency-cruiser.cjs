/**
 * Import rules checked in CI (`pnpm check:imports`): no module imports itself back through others,
 * type-only imports included. Parsed with swc (TypeScript 7 has no compiler API for tools).
 */
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
  ],
  options: {
    parser: "swc",
    tsPreCompilationDeps: true,
    doNotFollow: { path: "node_modules" },
    exclude: { path: "node_modules|/gen/|/dist/" },
  },
};
