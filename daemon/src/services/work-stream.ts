import type { MessageInitShape } from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import {
  type CompleteTaskRequest,
  type TaskAssignment,
  type WorkRequest,
  WorkResponseSchema,
} from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { checkQueue, type Principal, principalKey } from "../auth.js";
import type { Engine } from "../engine/engine.js";
import { redisErrorToConnect } from "../redis/redis.js";
import type { AbortFanOut } from "../server/abort-fanout.js";
import { callError } from "../server/call-errors.js";
import { envelopeSink, peerOfCall, writeEnvelopes } from "../server/response-stream.js";
import { splitResults } from "./answer-fit.js";
import { RequestCheck } from "./request-checks.js";

/** Most assignments one poll of the stream takes (PollTask's limit). */
export const MAX_TASKS_PER_POLL = 256;
/** Most credits a Work stream may hold unused. */
const MAX_WORK_CREDITS = 1000;
/** Most completions in one message (CompleteTasks' limit). */
const MAX_COMPLETIONS_PER_CALL = 1000;

type WorkResponseInit = MessageInitShape<typeof WorkResponseSchema>;
type CompleteTaskResultInit = NonNullable<WorkResponseInit["results"]>[number];

/** Identity of a worker as PollTask and Work's first message carry it. */
export interface WorkerIdentity {
  queue: string;
  workerId: string;
  handlers: string[];
}

/** Checks a worker's queue, id and handler names into `check`. */
export function checkIdentity(
  check: RequestCheck,
  { queue, workerId, handlers }: WorkerIdentity,
): RequestCheck {
  check
    .name(queue, "queue")
    .require(workerId.length <= 256, "worker_id", "must be at most 256 characters")
    .require(handlers.length <= 1000, "handlers", "must list at most 1000 handlers");
  handlers.forEach((h, i) => {
    check.require(h !== "" && h.length <= 256, `handlers[${i}]`, "must be 1-256 characters");
  });
  return check;
}

/** Checks a batch of completions: 1 to 1,000, each lease at most once. */
export function checkCompletions(
  check: RequestCheck,
  completions: CompleteTaskRequest[],
  allowEmpty: boolean,
) {
  check.require(
    (allowEmpty || completions.length > 0) && completions.length <= MAX_COMPLETIONS_PER_CALL,
    "completions",
    `must hold ${allowEmpty ? 0 : 1} to ${MAX_COMPLETIONS_PER_CALL} completions`,
  );
  const seen = new Set<string>();
  completions.forEach((c, i) => {
    check.require(!seen.has(c.leaseId), `completions[${i}].lease_id`, "appears twice");
    seen.add(c.leaseId);
  });
  return check;
}

/**
 * Records completions, each as CompleteTask would, and answers each with the code CompleteTask would
 * have answered (see callError: UNAVAILABLE while Redis is unreachable, never a library's text).
 * An unexpected error (INTERNAL) is thrown when `throwUnexpected`, else answered too.
 */
export async function completeAll(
  engine: Engine,
  completions: CompleteTaskRequest[],
  principal: Principal | undefined,
  throwUnexpected: boolean,
  queue?: string,
): Promise<CompleteTaskResultInit[]> {
  return Promise.all(
    completions.map(async (c, i) => {
      // Announced before anything is awaited: see LeaseOps.announceOffer.
      const announced = queue === undefined ? undefined : engine.leases.announceOffer(queue);
      try {
        const check = new RequestCheck();
        const output = check.json(c.output, "output");
        check.done();
        const { cancelRequested } = await engine.leases.complete(c.leaseId, output, principal, announced);
        return { leaseId: c.leaseId, code: 0, message: "", cancelRequested };
      } catch (err) {
        announced?.offer.abandon();
        const error = callError(err, engine.logger, { procedure: "complete", leaseId: c.leaseId });
        if (throwUnexpected && error.code === Code.Internal) throw error;
        // Field paths name the completion: "lease_id" becomes "completions[3].lease_id".
        const message = error.rawMessage.replace(/^(lease_id|output)\b/, `completions[${i}].$1`);
        return { leaseId: c.leaseId, code: error.code, message, cancelRequested: false };
      }
    }),
  );
}

/** Whether a poll failed because Redis could not answer for now (its caller may try again). */
function isTransient(err: unknown): boolean {
  const mapped = redisErrorToConnect(err);
  return mapped instanceof ConnectError && mapped.code === Code.Unavailable;
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** A wake-up for one waiter at a time: `wait()` resolves at the next `wake()`. */
function wakeUp(): { wait: () => Promise<void>; wake: () => void } {
  let waiting: (() => void) | undefined;
  return {
    wait: () =>
      new Promise<void>((resolve) => {
        waiting = resolve;
      }),
    wake: () => {
      const w = waiting;
      waiting = undefined;
      w?.();
    },
  };
}

/**
 * One Work stream: reads the worker's messages (credits and outputs), polls
 * the queue for as many tasks as the worker has credits, and sends the
 * assignments and the outputs' answers as they come. The stream ends once the
 * worker half-closed it and every output it sent is answered; a message that
 * breaks the rules ends it with INVALID_ARGUMENT.
 */
export async function* workStream(
  engine: Engine,
  shutdownCalls: AbortFanOut,
  requests: AsyncIterable<WorkRequest>,
  ctx: HandlerContext,
): AsyncGenerator<WorkResponseInit> {
  const principal = ctx.values.get(principalKey);
  const peer = peerOfCall(ctx);
  // The stream's polls see shutdown through this signal, released when the stream ends.
  const stopping = shutdownCalls.follow();
  const shutdown = stopping.signal;
  const outbox: WorkResponseInit[] = [];
  // The sender waits for messages to send, the poller for credits: each has its own wake-up.
  const sender = wakeUp();
  const notify = sender.wake;
  const creditsCame = wakeUp();
  const wakePoller = creditsCame.wake;
  let identity: WorkerIdentity | undefined;
  let credits = 0;
  let failure: unknown;
  let reading = true;
  let polling = true;
  const answering = new Set<Promise<void>>();
  // Ends polling when the worker half-closes, the call goes away, or the stream fails.
  const polls = new AbortController();
  polls.signal.addEventListener("abort", wakePoller, { once: true });
  const onGone = () => polls.abort();
  ctx.signal.addEventListener("abort", onGone, { once: true });

  const read = async () => {
    for await (const req of requests) {
      peer?.touch();
      const check = new RequestCheck();
      if (identity === undefined) {
        checkIdentity(check, req).done();
        checkQueue(principal, req.queue);
        identity = { queue: req.queue, workerId: req.workerId || "anonymous", handlers: req.handlers };
      } else {
        check.require(
          req.queue === "" || req.queue === identity.queue,
          "queue",
          `must be empty or "${identity.queue}", the queue the stream opened with`,
        );
      }
      check.require(
        credits + req.credits <= MAX_WORK_CREDITS,
        "credits",
        `would leave ${credits + req.credits} credits unused; at most ${MAX_WORK_CREDITS} may be`,
      );
      checkCompletions(check, req.completions, true).done();
      credits += req.credits;
      if (req.credits > 0) wakePoller();
      if (req.completions.length > 0) {
        // The completions' fetches of next jobs are announced before the poll this message woke
        // runs (it runs once this read yields), so that it takes those jobs.
        const answered = completeAll(engine, req.completions, principal, false, identity.queue).then(
          (results) => {
            for (const part of splitResults(results, engine.maxResponseBytes)) outbox.push({ results: part });
          },
        );
        answering.add(answered);
        void answered.finally(() => {
          answering.delete(answered);
          notify();
        });
      }
    }
  };

  const poll = async () => {
    let pollFailures = 0;
    while (!polls.signal.aborted) {
      if (credits === 0 || identity === undefined) {
        await creditsCame.wait();
        continue;
      }
      // A worker that left a PING unanswered gets no task until it shows life again.
      if (peer?.suspect) {
        await peer.whenAlive(polls.signal);
        continue;
      }
      let assignments: TaskAssignment[];
      try {
        assignments = await engine.leases.poll(
          {
            ...identity,
            waitMs: engine.options.pollWaitCapMs,
            maxTasks: Math.min(credits, MAX_TASKS_PER_POLL),
            topUp: false,
            owner: principal?.name,
            peer,
          },
          polls.signal,
          shutdown,
        );
        pollFailures = 0;
      } catch (err) {
        // Redis away (a restart, a failover): the stream stays open and polls again once it may be
        // back, as a worker's own retry would; anything else ends the stream with its error.
        if (!isTransient(err)) throw err;
        pollFailures++;
        engine.logger.debug(
          { err, queue: identity.queue, failures: pollFailures },
          "a Work stream's poll failed; polling again",
        );
        await pause(Math.min(50 * 2 ** pollFailures, 1000), polls.signal);
        continue;
      }
      credits -= assignments.length;
      if (assignments.length > 0) {
        outbox.push({ assignments });
        notify();
      }
      if (shutdown.aborted) return;
    }
  };

  const reader = read()
    .catch((err: unknown) => {
      failure ??= err;
    })
    .finally(() => {
      reading = false;
      polls.abort();
      notify();
    });
  const poller = poll()
    .catch((err: unknown) => {
      failure ??= err;
      polls.abort();
    })
    .finally(() => {
      // Assignments of a poll that ended with the stream are sent before the stream ends.
      polling = false;
      notify();
    });
  // Once Connect has written the response headers and a first message, later messages go straight
  // to the HTTP/2 stream as envelopes, all those waiting in one write: Connect's pipeline of async
  // iterables costs more per message than encoding it.
  const sink = envelopeSink(ctx);
  let framing = false;
  try {
    for (;;) {
      if (framing && sink !== undefined && outbox.length > 0) {
        await writeEnvelopes(sink, WorkResponseSchema, outbox.splice(0), ctx.signal);
        continue;
      }
      const next = outbox.shift();
      if (next !== undefined) {
        yield next;
        // Resumed: Connect has written `next`.
        framing = sink !== undefined;
        continue;
      }
      // A failed stream ends at once: its reader may wait for a message the worker never sends.
      if (failure !== undefined) throw failure;
      if (!reading && !polling && answering.size === 0) break;
      await sender.wait();
    }
  } finally {
    polls.abort();
    ctx.signal.removeEventListener("abort", onGone);
    notify();
    await (failure === undefined ? Promise.allSettled([reader, poller]) : poller);
    stopping.release();
  }
}
