import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import type { WatchRunsRequest, WatchRunsResponseSchema } from "@weft/sdk/gen/weft/v1/run_watch_pb.js";
import type { Engine } from "../engine/engine.js";
import { isRunId } from "../engine/shared/index.js";
import type { AbortFanOut } from "../server/abort-fanout.js";
import { callError } from "../server/call-errors.js";
import { envelopeSink, writeFrames } from "../server/response-stream.js";
import { RequestCheck } from "./request-checks.js";

/** Most entries of `add_runs`, and of `remove_runs`, in one message. */
const MAX_RUNS_PER_MESSAGE = 10_000;
/** Most entries of `add_workflows`, and of `remove_workflows`, in one message. */
const MAX_WORKFLOWS_PER_MESSAGE = 100;

type Response = MessageInitShape<typeof WatchRunsResponseSchema>;

/** Checks one WatchRunsRequest whole; throws INVALID_ARGUMENT naming every field in error. */
export function checkWatchRunsRequest(req: WatchRunsRequest): void {
  const check = new RequestCheck();
  const counts: [string, number, number][] = [
    ["add_runs", req.addRuns.length, MAX_RUNS_PER_MESSAGE],
    ["remove_runs", req.removeRuns.length, MAX_RUNS_PER_MESSAGE],
    ["add_workflows", req.addWorkflows.length, MAX_WORKFLOWS_PER_MESSAGE],
    ["remove_workflows", req.removeWorkflows.length, MAX_WORKFLOWS_PER_MESSAGE],
  ];
  for (const [field, n, max] of counts) {
    check.require(n <= max, field, `must hold at most ${max} entries in one message (it holds ${n})`);
  }
  check.done();
  const runId = (id: string, field: string) => {
    if (id === "") check.require(false, field, "is required");
    else check.require(isRunId(id), field, `"${id.slice(0, 64)}" is not a run id`);
  };
  const seen = new Set<string>();
  req.addRuns.forEach((add, i) => {
    runId(add.runId, `add_runs[${i}].run_id`);
    check.require(!seen.has(add.runId), `add_runs[${i}].run_id`, "appears twice");
    seen.add(add.runId);
    check.require(add.afterSequence >= 0n, `add_runs[${i}].after_sequence`, "must not be negative");
  });
  req.removeRuns.forEach((id, i) => {
    runId(id, `remove_runs[${i}]`);
  });
  const names = new Set<string>();
  req.addWorkflows.forEach(({ workflow }, i) => {
    check.name(workflow, `add_workflows[${i}].workflow`);
    check.require(!names.has(workflow), `add_workflows[${i}].workflow`, "appears twice");
    names.add(workflow);
  });
  req.removeWorkflows.forEach((name, i) => {
    check.name(name, `remove_workflows[${i}]`);
  });
  check.done();
}

/**
 * One WatchRuns stream: applies the client's messages as they come and sends the events of what it
 * follows. Its first message is empty (the stream is open); later ones go, when the call allows,
 * straight to the HTTP/2 stream as ready-made envelopes, every waiting event in one write. The
 * stream ends once the client half-closed it and nothing is followed any more, with
 * INVALID_ARGUMENT for a message that breaks the rules, RESOURCE_EXHAUSTED for a client that reads
 * too slowly, UNAVAILABLE when Redis fails or weftd shuts down (the client resumes each run after
 * the last sequence it has).
 */
export async function* watchRunsStream(
  engine: Engine,
  shutdown: AbortFanOut,
  requests: AsyncIterable<WatchRunsRequest>,
  ctx: HandlerContext,
): AsyncGenerator<Response> {
  let waiting: (() => void) | undefined;
  const wake = () => {
    const w = waiting;
    waiting = undefined;
    w?.();
  };
  const { watch, release } = engine.watches.watchMany(wake);
  const stopping = shutdown.follow(ctx.signal);
  const onStop = () => wake();
  stopping.signal.addEventListener("abort", onStop, { once: true });
  let reading = true;
  let readFailure: unknown;
  const reader = (async () => {
    for await (const req of requests) {
      checkWatchRunsRequest(req);
      watch.apply(req);
    }
  })()
    .catch((err: unknown) => {
      readFailure = err;
    })
    .finally(() => {
      reading = false;
      wake();
    });
  const sink = envelopeSink(ctx);
  const error = (err: unknown) =>
    callError(err, engine.logger, { procedure: "WatchRuns", runs: watch.runCount });
  try {
    // The first message opens the response: the client knows the stream is up.
    yield {};
    for (;;) {
      if (shutdown.aborted)
        throw new ConnectError("weftd is shutting down; reconnect to resume", Code.Unavailable);
      if (ctx.signal.aborted) return;
      if (readFailure !== undefined) throw error(readFailure);
      if (watch.failure !== undefined) throw error(watch.failure);
      if (sink !== undefined) {
        const frames = watch.takeFrames();
        if (frames.length > 0) {
          await writeFrames(sink, frames, stopping.signal);
          continue;
        }
      } else {
        const messages = watch.takeMessages();
        if (messages.length > 0) {
          for (const message of messages) yield message;
          continue;
        }
      }
      if (!reading && watch.idle) return;
      await new Promise<void>((resolve) => {
        waiting = resolve;
      });
    }
  } finally {
    stopping.signal.removeEventListener("abort", onStop);
    stopping.release();
    release();
    // A stream that ends while the client still writes (an error, a slow client) ends at once: the
    // reader waits for a message the client may never send, and the status goes out only once this
    // returns. The reader stops when the call ends; what it reads after is not applied.
    if (!reading) await reader;
  }
}
