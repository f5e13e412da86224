import type { TaskHandlers } from "../handler.js";

/** Handlers for the CLI test: the module shape `bin.ts` loads. */
export const handlers: TaskHandlers = {
  double: async (input) => ({ doubled: (input as { n: number }).n * 2 }),
};
