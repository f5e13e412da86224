/**
 * The client of the peer scenario, in a process of its own so that its CPU is counted apart: a service
 * that starts DAG runs and waits for their results, written with @weft/sdk against weftd, or with
 * BullMQ's FlowProducer and one shared QueueEvents on the same Redis (how BullMQ's own docs wait for
 * a flow: `job.waitUntilFinished(queueEvents)`). Both sides run the same shapes (see PeerShape).
 */
import type { JsonValue } from "@bufbuild/protobuf";
import { createWeftClient } from "@weft/sdk";
import { type FlowJob, FlowProducer, type Job, Queue, QueueEvents } from "bullmq";
import { Redis } from "ioredis";
import { inParallel } from "../clients.js";
import { onParentMessage, send } from "./completion-counter.js";
import type { PeerClientChildConfig, PeerShape } from "./protocol.js";

const config = JSON.parse(process.env.BENCH_CHILD ?? "{}") as PeerClientChildConfig;
const now = () => performance.timeOrigin + performance.now();

/** The shapes of one side: each returns the latency samples when it measured them. */
interface Side {
  chainsBatched(runs: number, round: string): Promise<void>;
  chainsEach(runs: number, lanes: number, round: string): Promise<void>;
  fan(width: number, round: string): Promise<void>;
  /** Starts a one-task run asking for its start time; resolves with that time. */
  single(round: string, i: number): Promise<number>;
  close(): Promise<void>;
}

/** The same shapes through @weft/sdk: trigger (batched when concurrent), result() for each run. */
function weftSide(address: string, sdk: { sharedWatch?: boolean; batchTriggers?: boolean }): Side {
  const client = createWeftClient({ address, ...sdk });
  return {
    async chainsBatched(runs, round) {
      const waits: Promise<JsonValue>[] = [];
      for (let start = 0; start < runs; start += 1000) {
        const count = Math.min(1000, runs - start);
        const started = await client.triggerMany(
          Array.from({ length: count }, (_, j) => ({ workflow: "chain3", input: `${round}-${start + j}` })),
        );
        for (const { run } of started) waits.push(client.result(run.id));
      }
      await Promise.all(waits);
    },
    async chainsEach(runs, lanes, round) {
      await inParallel(runs, lanes, async (i) => {
        const { run } = await client.trigger("chain3", `${round}-${i}`);
        await client.result(run.id);
      });
    },
    async fan(width) {
      const { run } = await client.trigger(`fan${width}`, null);
      await client.result(run.id);
    },
    async single() {
      const { run } = await client.trigger("single", { lat: true });
      const output = (await client.result(run.id)) as { t0: number };
      return output.t0;
    },
    async close() {
      client.close();
    },
  };
}

/** BullMQ's job retention, as Weft keeps its own jobs (completed: an hour or 10,000; failed: a day). */
const JOB_OPTS = {
  removeOnComplete: { age: 3600, count: 10_000 },
  removeOnFail: { age: 24 * 3600, count: 10_000 },
};

/** The same shapes with FlowProducer: a chain is a tree of depth 3 (BullMQ runs children first). */
function bullmqSide(redisUrl: string, prefix: string, queueName: string): Side {
  const connection = new Redis(redisUrl, { maxRetriesPerRequest: null });
  const flows = new FlowProducer({ connection, prefix });
  const queue = new Queue(queueName, { connection, prefix });
  const events = new QueueEvents(queueName, {
    connection: new Redis(redisUrl, { maxRetriesPerRequest: null }),
    prefix,
  });
  const chain = (data: string): FlowJob => ({
    name: "t2",
    queueName,
    data,
    opts: JOB_OPTS,
    children: [
      {
        name: "t1",
        queueName,
        data,
        opts: JOB_OPTS,
        children: [{ name: "t0", queueName, data, opts: JOB_OPTS }],
      },
    ],
  });
  const wait = (job: Job) => job.waitUntilFinished(events);
  return {
    async chainsBatched(runs, round) {
      await events.waitUntilReady();
      const waits: Promise<unknown>[] = [];
      for (let start = 0; start < runs; start += 1000) {
        const count = Math.min(1000, runs - start);
        const nodes = await flows.addBulk(
          Array.from({ length: count }, (_, j) => chain(`${round}-${start + j}`)),
        );
        for (const node of nodes) waits.push(wait(node.job));
      }
      await Promise.all(waits);
    },
    async chainsEach(runs, lanes, round) {
      await events.waitUntilReady();
      await inParallel(runs, lanes, async (i) => {
        const node = await flows.add(chain(`${round}-${i}`));
        await wait(node.job);
      });
    },
    async fan(width, round) {
      await events.waitUntilReady();
      // FlowProducer only builds trees (children run before their parent): the root is one job,
      // awaited, then the sink with its `width` children is one flow.
      const root = await queue.add("root", round, JOB_OPTS);
      await wait(root);
      const node = await flows.add({
        name: "sink",
        queueName,
        data: round,
        opts: JOB_OPTS,
        children: Array.from({ length: width }, (_, i) => ({
          name: `m${i}`,
          queueName,
          data: round,
          opts: JOB_OPTS,
        })),
      });
      await wait(node.job);
    },
    async single() {
      await events.waitUntilReady();
      const node = await flows.add({ name: "single", queueName, data: { lat: true }, opts: JOB_OPTS });
      return (await wait(node.job)) as number;
    },
    async close() {
      await events.close();
      await flows.close();
      await queue.close();
    },
  };
}

const side =
  config.kind === "weft"
    ? weftSide(config.address, config.sdk)
    : bullmqSide(config.redisUrl, config.prefix, config.queue);

async function go(
  shape: PeerShape,
): Promise<{ ms: number; latency?: { start: number[]; result: number[] } }> {
  const t0 = now();
  switch (shape.kind) {
    case "chains-batched":
      await side.chainsBatched(shape.runs, shape.round);
      break;
    case "chains-each":
      await side.chainsEach(shape.runs, shape.lanes, shape.round);
      break;
    case "fan":
      await side.fan(shape.width, shape.round);
      break;
    case "latency": {
      const start: number[] = [];
      const result: number[] = [];
      for (let i = 0; i < shape.samples; i++) {
        const t = now();
        const started = await side.single(shape.round, i);
        result.push(now() - t);
        start.push(started - t);
      }
      return { ms: now() - t0, latency: { start, result } };
    }
  }
  return { ms: now() - t0 };
}

onParentMessage((message) => {
  if (message.t === "go") {
    go(message.shape).then(
      (went) => send({ t: "went", ...went }),
      (err: unknown) =>
        send({ t: "error", message: err instanceof Error ? (err.stack ?? err.message) : String(err) }),
    );
  } else if (message.t === "stop") {
    void side.close().finally(() => process.exit(0));
  }
});
send({ t: "ready" });
