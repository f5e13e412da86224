import { create } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  type CompleteTasksRequest,
  CompleteTasksResponseSchema,
  TaskAssignmentSchema,
  type WorkRequest,
  type WorkResponse,
  WorkResponseSchema,
} from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { describe, expect, test } from "vitest";
import { CompletionBatcher } from "./completion-batcher.js";
import { DaemonHealth } from "./daemon-health.js";
import { toProtoValue } from "./json.js";
import type { ReportPolicy } from "./reporter.js";
import { within } from "./testing/async.js";
import { LogCapture } from "./testing/log-capture.js";
import { WorkSession } from "./work-session.js";
import type { WorkerClient } from "./worker-client.js";

/**
 * A WorkerClient whose Work stream the test drives: it records what the session sends and answers
 * with what the test pushes; `fail` breaks the stream. CompleteTasks calls are recorded and answered
 * with `completeCodes` (code 0 by default).
 */
function fakeClient() {
  const sent: WorkRequest[] = [];
  const completeCalls: string[][] = [];
  const completeCodes: Code[] = [];
  const pushed: (WorkResponse | Error)[] = [];
  let wake: (() => void) | undefined;
  let onSent: (() => void) | undefined;
  const client = {
    work(requests: AsyncIterable<WorkRequest>) {
      void (async () => {
        for await (const r of requests) {
          sent.push(r);
          onSent?.();
        }
      })();
      return (async function* () {
        for (;;) {
          const next = pushed.shift();
          if (next instanceof Error) throw next;
          if (next !== undefined) {
            yield next;
            continue;
          }
          await new Promise<void>((resolve) => {
            wake = resolve;
          });
        }
      })();
    },
    async completeTasks({ completions }: CompleteTasksRequest) {
      completeCalls.push(completions.map((c) => c.leaseId));
      return create(CompleteTasksResponseSchema, {
        results: completions.map((c) => ({ leaseId: c.leaseId, code: completeCodes.shift() ?? 0 })),
      });
    },
  } as unknown as WorkerClient;
  return {
    client,
    sent,
    completeCalls,
    completeCodes,
    push(message: WorkResponse | Error) {
      pushed.push(message);
      wake?.();
    },
    async sentCount(n: number) {
      await within(
        new Promise<void>((resolve) => {
          const check = () => {
            if (sent.length >= n) resolve();
          };
          onSent = check;
          check();
        }),
        `${n} message(s) on the stream`,
        3_000,
      );
    },
  };
}

function setup(freeSlots: number) {
  const fake = fakeClient();
  const logs = new LogCapture();
  const health = new DaemonHealth(logs.logger);
  const batcher = new CompletionBatcher(fake.client, health, logs.logger);
  const session = new WorkSession(
    fake.client,
    batcher,
    health,
    { queue: "q", workerId: "w", handlers: ["h"] },
    freeSlots,
  );
  const policy: ReportPolicy = {
    logger: logs.logger,
    health,
    attempts: 5,
    initialDelayMs: 1,
    maxDelayMs: 5,
    signal: new AbortController().signal,
  };
  return { fake, session, policy, logs };
}

describe("WorkSession", () => {
  test("opens with the free slots as credits, and grants each freed slot in the next message", async () => {
    const { fake, session } = setup(3);
    const started: string[] = [];
    const stop = new AbortController();
    const running = session.run((a) => started.push(a.taskId), stop.signal);
    await fake.sentCount(1);
    expect(fake.sent[0]).toMatchObject({ queue: "q", workerId: "w", handlers: ["h"], credits: 3 });
    fake.push(
      create(WorkResponseSchema, {
        assignments: [
          create(TaskAssignmentSchema, { taskId: "a" }),
          create(TaskAssignmentSchema, { taskId: "b" }),
        ],
      }),
    );
    session.credit();
    session.credit();
    await fake.sentCount(2);
    expect(fake.sent[1]?.credits).toBe(2);
    expect(started).toEqual(["a", "b"]);
    stop.abort();
    fake.push(new ConnectError("gone", Code.Canceled));
    await running.catch(() => {});
  });

  test("an output answered OK on the stream is done; one answered UNAVAILABLE goes out again with CompleteTasks", async () => {
    const { fake, session, policy } = setup(2);
    const running = session.run(() => {}, new AbortController().signal);
    const ok = session.complete("lease-ok", toProtoValue(1), policy);
    const retried = session.complete("lease-retry", toProtoValue(2), policy);
    await fake.sentCount(2);
    expect(fake.sent[1]?.completions.map((c) => c.leaseId)).toEqual(["lease-ok", "lease-retry"]);
    fake.push(
      create(WorkResponseSchema, {
        results: [
          { leaseId: "lease-ok", code: 0 },
          { leaseId: "lease-retry", code: Code.Unavailable, message: "redis down" },
        ],
      }),
    );
    await within(Promise.all([ok, retried]), "both outputs settled", 3_000);
    expect(fake.completeCalls).toEqual([["lease-retry"]]);
    fake.push(new ConnectError("gone", Code.Canceled));
    await running.catch(() => {});
  });

  test("outputs sent on a stream that breaks before answering go out with CompleteTasks", async () => {
    const { fake, session, policy } = setup(1);
    const running = session.run(() => {}, new AbortController().signal);
    const output = session.complete("lease-1", toProtoValue({ x: 1 }), policy);
    if (output === undefined) throw new Error("the open session refused the output");
    await fake.sentCount(2);
    fake.push(new ConnectError("connection reset", Code.Unavailable));
    await expect(running).rejects.toThrow(/connection reset/);
    await within(output, "the output delivered by CompleteTasks", 3_000);
    expect(fake.completeCalls).toEqual([["lease-1"]]);
    // The session takes no more outputs: the worker sends them with CompleteTasks itself.
    expect(session.complete("lease-2", toProtoValue(null), policy)).toBeUndefined();
  });

  test("never grants more than 1,000 credits unused", async () => {
    const { fake, session } = setup(1200);
    const running = session.run(() => {}, new AbortController().signal);
    await fake.sentCount(1);
    expect(fake.sent[0]?.credits).toBe(1000);
    // 300 assignments used leave room for 300 more credits: the 200 held back are granted.
    fake.push(
      create(WorkResponseSchema, {
        assignments: Array.from({ length: 300 }, (_, i) => create(TaskAssignmentSchema, { taskId: `t${i}` })),
      }),
    );
    await fake.sentCount(2);
    expect(fake.sent[1]?.credits).toBe(200);
    fake.push(new ConnectError("gone", Code.Canceled));
    await running.catch(() => {});
  });
});
