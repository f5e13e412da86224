import { Code, ConnectError } from "@connectrpc/connect";
import type { DeadLetter, GetDeadLetterResponse } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import type { Run } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { Logger } from "pino";
import type { RedisClient } from "../../redis/redis.js";
import { notFound, type RunReads } from "../runs/index.js";
import type { Keys } from "../shared/index.js";
import {
  decodeCursor,
  type EntryFilter,
  encodeCursor,
  entryNotFound,
  formatEntryId,
  parseEntryId,
} from "./dead-letter-ids.js";
import { type DeadLetterIndex, type EntryPlace, memberOf } from "./dead-letter-index.js";
import type { DeadLetterReads, ListedEntry } from "./dead-letter-reads.js";
import type { ResumeOps } from "./resume.js";

/**
 * Takes an entry out of its run's hash if it is still the one named. KEYS: the run's hash. ARGV:
 * taskId, resume count. Returns the entry ('' when it is not there).
 */
const DISCARD = `
local raw = redis.call('HGET', KEYS[1], 'x:' .. ARGV[1])
if not raw then return '' end
if cjson.decode(raw).g ~= tonumber(ARGV[2]) then return '' end
redis.call('HDEL', KEYS[1], 'x:' .. ARGV[1])
return raw
`;

/** Runs resumed at once by a bulk retry. */
const RESUMES_AT_ONCE = 16;

/** What bulk retries and discards scan, at most, per entry they may handle (entries that do not match included). */
const SCAN_FACTOR = 20;

/** What the dead-letter operations work with. */
export interface DeadLetterDeps {
  redis: RedisClient;
  keys: Keys;
  logger: Logger;
  index: DeadLetterIndex;
  reads: DeadLetterReads;
  resume: ResumeOps;
  runReads: RunReads;
}

/** What a bulk retry did. */
export interface BulkRetry {
  retried: number;
  runsResumed: number;
  skipped: number;
  next: string;
}

/**
 * The dead-letter view (tasks that failed for good, kept as long as their run) and what an operator
 * does with its entries: read them, retry them (their run resumes) or discard them (the run stays
 * as it is), one at a time or every entry matching a filter, a bounded number per call.
 */
export class DeadLetters {
  /** Entries this replica discarded (for /metrics). */
  discarded = 0;

  constructor(private readonly deps: DeadLetterDeps) {
    if (!("weftDeadLetterDiscard" in deps.redis))
      deps.redis.defineCommand("weftDeadLetterDiscard", { numberOfKeys: 1, lua: DISCARD });
  }

  /** One page of entries, newest first. */
  list(
    filter: EntryFilter,
    pageSize: number,
    pageToken: string,
  ): Promise<{ deadLetters: DeadLetter[]; next: string }> {
    return this.deps.reads.list(filter, pageSize, pageToken);
  }

  /** One entry whole. */
  get(id: string): Promise<GetDeadLetterResponse> {
    return this.deps.reads.get(id);
  }

  /** Discards one entry: it leaves the view; its run stays as it is. Returns the entry as it was. */
  async discard(idText: string): Promise<DeadLetter> {
    const id = parseEntryId(idText);
    const [view] = await this.deps.reads.readViews([memberOf(id.runId, id.taskId)], 1 << 30);
    if (view === undefined || view.entry.stored.g !== id.gen) throw entryNotFound(idText);
    const letter = await this.deps.reads.letter(view.entry, view.record);
    if (!(await this.take(view.entry))) throw entryNotFound(idText);
    return letter;
  }

  /** Retries one entry: its run resumes (from the finish the entry belongs to). */
  async retry(idText: string): Promise<{ run: Run; resumed: boolean }> {
    const id = parseEntryId(idText);
    const [view] = await this.deps.reads.readViews([memberOf(id.runId, id.taskId)], 0);
    if (view !== undefined && view.entry.stored.g === id.gen) {
      const result = await this.deps.resume.resume(id.runId, {
        resumeCount: id.gen,
        reason: `retry of dead letter "${idText}"`,
      });
      return { run: result.run, resumed: result.resumed };
    }
    // Retried already (the run was resumed since): the same answer as a repeated resume.
    const [status, gen] = await this.deps.redis.hmget(this.deps.keys.run(id.runId).run, "s", "gen");
    if (status === null) throw notFound(id.runId);
    if (Number(gen ?? 0) > id.gen) {
      return { run: (await this.deps.runReads.summaries([id.runId]))[0] as Run, resumed: false };
    }
    throw entryNotFound(idText);
  }

  /** Retries the entries matching `filter`, at most `limit` of them, from `pageToken` on. */
  async retryMatching(filter: EntryFilter, limit: number, pageToken: string): Promise<BulkRetry> {
    const { entries, next } = await this.collect(filter, limit, pageToken);
    const byRun = new Map<string, ListedEntry[]>();
    for (const e of entries) {
      const list = byRun.get(e.id.runId);
      if (list === undefined) byRun.set(e.id.runId, [e]);
      else list.push(e);
    }
    const result: BulkRetry = { retried: 0, runsResumed: 0, skipped: 0, next };
    const runs = [...byRun];
    for (let i = 0; i < runs.length; i += RESUMES_AT_ONCE) {
      await Promise.all(
        runs.slice(i, i + RESUMES_AT_ONCE).map(async ([runId, list]) => {
          const gen = (list[0] as ListedEntry).id.gen;
          try {
            const r = await this.deps.resume.resume(runId, {
              resumeCount: gen,
              reason: "retry of its dead letters",
            });
            if (r.resumed) {
              result.runsResumed++;
              result.retried += list.length;
              return;
            }
          } catch (err) {
            // A run that is running again, or gone since: its entries are not this call's to retry.
            const code = ConnectError.from(err).code;
            if (code !== Code.FailedPrecondition && code !== Code.NotFound) throw err;
          }
          result.skipped += list.length;
        }),
      );
    }
    this.deps.logger.info({ ...result, filter }, "dead letters retried");
    return result;
  }

  /** Discards the entries matching `filter`, at most `limit` of them, from `pageToken` on. */
  async discardMatching(
    filter: EntryFilter,
    limit: number,
    pageToken: string,
  ): Promise<{ discarded: number; next: string }> {
    const { entries, next } = await this.collect(filter, limit, pageToken);
    let discarded = 0;
    for (const e of entries) if (await this.take(e)) discarded++;
    this.deps.logger.info({ discarded, filter }, "dead letters discarded");
    return { discarded, next };
  }

  /** Up to `limit` entries matching `filter` from a page token on, and the token to go on with. */
  private async collect(
    filter: EntryFilter,
    limit: number,
    pageToken: string,
  ): Promise<{ entries: ListedEntry[]; next: string }> {
    const entries: ListedEntry[] = [];
    const cursor = await this.deps.reads.scan(
      filter,
      decodeCursor(pageToken),
      limit * SCAN_FACTOR + 1000,
      (entry) => {
        if (entries.length === limit) return false;
        entries.push(entry);
        return true;
      },
      0,
    );
    return { entries, next: cursor === undefined ? "" : encodeCursor(cursor) };
  }

  /** Takes an entry out of its run's hash, then out of its indexes; false when it was gone. */
  private async take(entry: Omit<ListedEntry, "member" | "score">): Promise<boolean> {
    const { redis, keys } = this.deps;
    const discard = (redis as unknown as Record<string, (...a: (string | number)[]) => Promise<string>>)
      .weftDeadLetterDiscard as (...a: (string | number)[]) => Promise<string>;
    const raw = await discard.call(redis, keys.run(entry.id.runId).run, entry.id.taskId, entry.id.gen);
    if (raw === "") return false;
    const place: EntryPlace = {
      runId: entry.id.runId,
      taskId: entry.id.taskId,
      queue: entry.stored.q,
      workflow: entry.workflow,
      errorType: entry.stored.et,
    };
    await this.deps.index.remove([place]);
    this.discarded++;
    this.deps.logger.info(
      { runId: place.runId, taskId: place.taskId, id: formatEntryId(entry.id) },
      "dead letter discarded",
    );
    return true;
  }
}
