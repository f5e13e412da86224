import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: [
      "test/**/*.test.ts",
      "daemon/src/**/*.test.ts",
      "workers/typescript/src/**/*.test.ts",
      "sdk/src/**/*.test.ts",
      "bench/src/**/*.test.ts",
    ],
    // Tests start real redis-server and weftd processes: forks isolate them, and the timeouts
    // leave room for process start-up on a slow CI machine.
    pool: "forks",
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
