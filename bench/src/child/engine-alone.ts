/**
 * A bench child process running Weft's engine — the code weftd runs for PollTask and CompleteTasks —
 * with in-process task slots instead of a worker process and gRPC: how fast Weft's bookkeeping on
 * BullMQ and Redis is without the hop. Diagnostic only (scenario 1): no deployment runs like this.
 */
import { create } from "@bufbuild/protobuf";
import { closeRedis, createLogger, createRedisClient, DEFAULT_CONFIG } from "@weft/daemon";
import { WorkflowDefinitionSchema } from "@weft/sdk/gen/weft/v1/workflow_pb.js";
// The engine is not part of @weft/daemon's API; the bench reaches into the package for this figure.
import { Engine } from "../../../daemon/src/engine/engine.js";
import { defaultPolicy } from "../../../daemon/src/policy.js";
import { onParentMessage, send } from "./completion-counter.js";
import type { EngineAloneChildConfig } from "./protocol.js";

const config = JSON.parse(process.env.BENCH_CHILD ?? "{}") as EngineAloneChildConfig;
const redis = createRedisClient(config.redisUrl, "bench-engine-alone");
const engine = await Engine.open(
  config.redisUrl,
  redis,
  {
    prefix: config.prefix,
    runRetentionMs: DEFAULT_CONFIG.runRetentionMs,
    pollWaitCapMs: DEFAULT_CONFIG.pollWaitCapMs,
    maxTasksPerWorkflow: config.maxTasks,
    maxPayloadBytes: DEFAULT_CONFIG.maxPayloadBytes,
    defaultHeartbeatTimeoutMs: DEFAULT_CONFIG.defaultHeartbeatTimeoutMs,
    stalledIntervalMs: DEFAULT_CONFIG.stalledIntervalMs,
    maxWatchersPerReplica: DEFAULT_CONFIG.maxWatchersPerReplica,
    reconcileAfterMs: DEFAULT_CONFIG.reconcileAfterMs,
  },
  defaultPolicy(),
  createLogger({ level: "warn", pretty: false }),
);
let runs = 0;

/**
 * One run of `n` parallel no-op tasks, its tasks taken by `concurrency` slots the way @weft/worker
 * takes them: one poll at a time for the free slots, each task's completion reported as its handler
 * returns (the completions of one tick reach the engine together, as one CompleteTasks call's do).
 */
async function runOne(n: number): Promise<number> {
  const name = `alone-${++runs}`;
  const queue = name;
  await engine.workflows.submit(
    create(WorkflowDefinitionSchema, {
      name,
      tasks: Array.from({ length: n }, (_, i) => ({ id: `t${i}`, handler: "noop", queue })),
    }),
  );
  const started = performance.now();
  await engine.runs.trigger(name, 0, null, "");
  let completed = 0;
  let handedOut = 0;
  const polls = new AbortController();
  await new Promise<void>((resolve, reject) => {
    const complete = (leaseId: string) => {
      engine.leases.complete(leaseId, null).then(() => {
        if (++completed === n) resolve();
      }, reject);
    };
    void (async () => {
      while (handedOut < n) {
        const free = config.concurrency - (handedOut - completed);
        if (free <= 0) {
          await new Promise((r) => setImmediate(r));
          continue;
        }
        const assignments = await engine.leases.poll(
          { queue, workerId: "engine-alone", handlers: ["noop"], waitMs: 10_000, maxTasks: free },
          polls.signal,
        );
        handedOut += assignments.length;
        for (const assignment of assignments) complete(assignment.leaseId);
        // As @weft/worker waits for a slot: the next poll goes out a turn of the event loop later.
        await new Promise((r) => setImmediate(r));
      }
    })().catch(reject);
  });
  return performance.now() - started;
}

onParentMessage((message) => {
  if (message.t === "run") {
    runOne(message.tasks).then(
      (ms) => send({ t: "ran", ms }),
      (err: unknown) => send({ t: "error", message: String(err) }),
    );
  } else if (message.t === "stop") {
    void engine
      .close()
      .then(() => closeRedis(redis))
      .finally(() => process.exit(0));
  }
});
send({ t: "ready" });
