import { defineConfig } from "vitest/config";

/**
 * The end-to-end tests that run a second time against a local Redis Cluster (3 masters, a replica
 * each), as the `cluster` project: the engine's suite of submit, trigger, batch trigger, DAG,
 * watch with resume, cancel, retries, timeouts, rate limits, per-key limits, leases and the
 * reconciler, with dead letters, resume of failed runs, circuit breakers and schedules (their API, and
 * firing exactly once across replicas through a kill -9), WatchRuns and the SDK's shared stream. The same tests, not copies: test/support/redis.ts starts a Cluster instead of one
 * redis-server when WEFT_TEST_REDIS=cluster. Tests of one redis-server's outages, of the CLI, the
 * SDK and the transports (which Redis's shape does not touch) run once. See docs/development.md.
 */
export const CLUSTER_SUITE = [
  "test/workflows.test.ts",
  "test/runs.test.ts",
  "test/batch.test.ts",
  "test/policy.test.ts",
  "test/lease-outcomes.test.ts",
  "test/resilience.test.ts",
  "test/watch-stream.test.ts",
  "test/work-stream.test.ts",
  "test/dead-letters.test.ts",
  "test/resume.test.ts",
  "test/circuit-breaker.test.ts",
  "test/schedules.test.ts",
  "test/schedules-replicas.test.ts",
  "test/watch-runs.test.ts",
  "test/sdk-shared-watch.test.ts",
];

export default defineConfig({
  test: {
    // Tests start real redis-server and weftd processes: forks isolate them, and the timeouts
    // leave room for process start-up on a slow CI machine.
    pool: "forks",
    // Most tests wait on Redis, weftd and workers rather than compute: two files at a time (vitest
    // would run one on a 2-core machine) keeps the whole suite within CI's 20 minutes.
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
    projects: [
      {
        extends: true,
        test: {
          name: "standalone",
          include: [
            "test/**/*.test.ts",
            "daemon/src/**/*.test.ts",
            "workers/typescript/src/**/*.test.ts",
            "sdk/src/**/*.test.ts",
            "bench/src/**/*.test.ts",
          ],
        },
      },
      {
        extends: true,
        test: {
          name: "cluster",
          include: CLUSTER_SUITE,
          env: { WEFT_TEST_REDIS: "cluster" },
        },
      },
    ],
  },
});
