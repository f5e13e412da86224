import { timestampMs } from "@bufbuild/protobuf/wkt";
import type { ServiceImpl } from "@connectrpc/connect";
import type { DeadLetterFilter, FailureService } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import type { Engine } from "../engine/engine.js";
import { entryFilterOf, parseEntryId } from "../engine/failures/index.js";
import { checkRunId } from "../engine/runs/index.js";
import { pageSizeOf, RequestCheck } from "./request-checks.js";

/** Most task ids a ResumeRun answer lists. */
const MAX_LISTED = 1000;

/** Most entries one bulk call retries or discards. */
const MAX_BULK = 1000;

/** Checks a filter's fields (names, and a time range that is one). */
function checkFilter(check: RequestCheck, f: DeadLetterFilter | undefined): void {
  if (f === undefined) return;
  if (f.queue !== "") check.name(f.queue, "filter.queue");
  if (f.workflow !== "") check.name(f.workflow, "filter.workflow");
  check.require(f.errorType.length <= 256, "filter.error_type", "must be at most 256 characters");
  const since = f.since === undefined ? undefined : timestampMs(f.since);
  const until = f.until === undefined ? undefined : timestampMs(f.until);
  check.require(since === undefined || Number.isFinite(since), "filter.since", "is not a valid time");
  check.require(until === undefined || Number.isFinite(until), "filter.until", "is not a valid time");
  if (since !== undefined && until !== undefined)
    check.require(since <= until, "filter.until", "must not be before filter.since");
}

/** Checks a bulk call's limit: 0 (the default, 100) to 1,000. */
function limitOf(check: RequestCheck, limit: number): number {
  check.require(limit >= 0 && limit <= MAX_BULK, "limit", `must be between 0 and ${MAX_BULK}`);
  return limit === 0 ? 100 : limit;
}

/** weft.v1.FailureService: dead letters, their retry and discard, and resuming runs. */
export function failureService(engine: Engine): ServiceImpl<typeof FailureService> {
  const { deadLetters } = engine;
  return {
    async listDeadLetters(req) {
      const check = new RequestCheck().pageSize(req.pageSize);
      checkFilter(check, req.filter);
      check.done();
      const { deadLetters: page, next } = await deadLetters.list(
        entryFilterOf(req.filter),
        pageSizeOf(req.pageSize),
        req.pageToken,
      );
      return { deadLetters: page, nextPageToken: next };
    },

    async getDeadLetter(req) {
      parseEntryId(req.id);
      return deadLetters.get(req.id);
    },

    async retryDeadLetter(req) {
      parseEntryId(req.id);
      return deadLetters.retry(req.id);
    },

    async discardDeadLetter(req) {
      parseEntryId(req.id);
      return { deadLetter: await deadLetters.discard(req.id) };
    },

    async retryDeadLetters(req) {
      const check = new RequestCheck();
      const limit = limitOf(check, req.limit);
      checkFilter(check, req.filter);
      check.done();
      const r = await deadLetters.retryMatching(entryFilterOf(req.filter), limit, req.pageToken);
      return { retried: r.retried, runsResumed: r.runsResumed, skipped: r.skipped, nextPageToken: r.next };
    },

    async discardDeadLetters(req) {
      const check = new RequestCheck();
      const limit = limitOf(check, req.limit);
      checkFilter(check, req.filter);
      check.done();
      const r = await deadLetters.discardMatching(entryFilterOf(req.filter), limit, req.pageToken);
      return { discarded: r.discarded, nextPageToken: r.next };
    },

    async resumeRun(req) {
      const check = new RequestCheck()
        .require(req.idempotencyKey.length <= 256, "idempotency_key", "must be at most 256 characters")
        .require(req.reason.length <= 1024, "reason", "must be at most 1024 characters");
      if (req.fromTask !== "") check.name(req.fromTask, "from_task");
      check.done();
      checkRunId(req.runId);
      const r = await engine.resumes.resume(req.runId, {
        fromTask: req.fromTask,
        idempotencyKey: req.idempotencyKey,
        reason: req.reason,
        ...(req.resumeCount === undefined ? {} : { resumeCount: req.resumeCount }),
      });
      // A huge fan-out's ids would not fit an answer: the first ones say enough.
      return {
        run: r.run,
        resumed: r.resumed,
        queuedTasks: r.queued.slice(0, MAX_LISTED),
        resetTasks: r.reset,
      };
    },
  };
}
