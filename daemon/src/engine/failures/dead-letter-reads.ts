import { create, type JsonValue } from "@bufbuild/protobuf";
import { timestampFromMs, type Value } from "@bufbuild/protobuf/wkt";
import {
  AttemptErrorSchema,
  type DeadLetter,
  DeadLetterSchema,
  type GetDeadLetterResponse,
  GetDeadLetterResponseSchema,
} from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import { TaskErrorSchema } from "@weft/sdk/gen/weft/v1/run_pb.js";
import type { RedisClient } from "../../redis/redis.js";
import type { WorkflowStore } from "../definitions/index.js";
import { AnswerRoom, anySlotPipeline, type Keys, measuredValue, textSize } from "../shared/index.js";
import {
  decodeCursor,
  type EntryFilter,
  type EntryId,
  encodeCursor,
  entryNotFound,
  formatEntryId,
  matches,
  parseEntryId,
  type ScanCursor,
} from "./dead-letter-ids.js";
import { memberOf, type StoredEntry } from "./dead-letter-index.js";

/** An entry as a listing reads it: where it is, what it says, and its index position. */
export interface ListedEntry {
  member: string;
  score: number;
  id: EntryId;
  stored: StoredEntry;
  workflow: string;
  version: number;
}

/** Records up to this size come whole in a listing; a larger one without its error's message and details. */
const RECORD_CAP = 2048;

/**
 * Reads one entry. KEYS: the run's hash, its tasks hash. ARGV: taskId, cap. Returns {entry, workflow,
 * version, record, recordBytes}: the entry '' when there is none, the record over `cap` without its
 * error's message and details (and with x = 'e').
 */
const ENTRY_VIEW = `
local entry = redis.call('HGET', KEYS[1], 'x:' .. ARGV[1])
if not entry then return {''} end
local head = redis.call('HMGET', KEYS[1], 'wf', 'v')
local size = redis.call('HSTRLEN', KEYS[2], ARGV[1])
local rec = redis.call('HGET', KEYS[2], ARGV[1]) or ''
if size > tonumber(ARGV[2]) then
  local t = cjson.decode(rec)
  if t.e then t.e.m = nil; t.e.d = nil end
  t.x = 'e'
  rec = cjson.encode(t)
end
return {entry, head[1] or '', head[2] or '0', rec, size}
`;

/**
 * Reading dead letters: pages of entries from the indexes (newest first), and one entry whole.
 * Each answer stays within the answer limit.
 */
export class DeadLetterReads {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly workflows: WorkflowStore,
    private readonly maxResponseBytes: number,
  ) {
    if (!("weftDeadLetterView" in redis))
      redis.defineCommand("weftDeadLetterView", { numberOfKeys: 2, lua: ENTRY_VIEW });
  }

  /**
   * Scans the entries matching `filter` after `cursor`, newest first, handing each to `take` until
   * it returns false or `max` entries were scanned; returns the cursor to go on from, undefined when
   * the index has no more. Members without entry (left behind) are removed from the index read.
   */
  async scan(
    filter: EntryFilter,
    cursor: ScanCursor | undefined,
    max: number,
    take: (entry: ListedEntry, record: string, recordBytes: number) => boolean,
    cap = RECORD_CAP,
  ): Promise<ScanCursor | undefined> {
    const { redis, keys } = this;
    const index =
      filter.queue !== ""
        ? keys.deadLetterIndex({ queue: filter.queue })
        : filter.workflow !== ""
          ? keys.deadLetterIndex({ workflow: filter.workflow })
          : filter.errorType !== ""
            ? keys.deadLetterIndex({ errorType: filter.errorType })
            : keys.deadLetterIndex();
    const min = filter.since === undefined ? "-inf" : String(filter.since);
    let scanned = 0;
    const batch = Math.min(Math.max(max, 50), 500);
    for (;;) {
      const top =
        cursor !== undefined
          ? String(cursor.score)
          : filter.until === undefined
            ? "+inf"
            : `(${filter.until}`;
      // A few extra cover the members sharing the cursor's score, skipped below.
      const raw = await redis.zrevrangebyscore(index, top, min, "WITHSCORES", "LIMIT", 0, batch + 20);
      const members: ScanCursor[] = [];
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const member = raw[i] as string;
        const score = Number(raw[i + 1]);
        // Equal scores come in descending member order: skip up to the cursor.
        if (cursor !== undefined && score === cursor.score && member >= cursor.member) continue;
        members.push({ member, score });
      }
      if (members.length === 0) return undefined;
      const views = await this.readViews(
        members.map((m) => m.member),
        cap,
      );
      const gone: string[] = [];
      for (const [i, m] of members.entries()) {
        const v = views[i];
        if (v === undefined) gone.push(m.member);
        else if (matches(filter, v.entry)) {
          if (!take({ ...v.entry, member: m.member, score: m.score }, v.record, v.recordBytes)) {
            if (gone.length > 0) await redis.zrem(index, ...gone);
            return cursor;
          }
        }
        cursor = m;
        scanned++;
        if (scanned >= max) {
          if (gone.length > 0) await redis.zrem(index, ...gone);
          return cursor;
        }
      }
      if (gone.length > 0) await redis.zrem(index, ...gone);
      if (raw.length / 2 < batch + 20) return undefined;
    }
  }

  /** One page of entries: at most `pageSize`, fewer when more would not fit in one answer. */
  async list(
    filter: EntryFilter,
    pageSize: number,
    pageToken: string,
  ): Promise<{ deadLetters: DeadLetter[]; next: string }> {
    const room = new AnswerRoom(this.maxResponseBytes);
    const out: DeadLetter[] = [];
    const next = await this.scan(filter, decodeCursor(pageToken), pageSize * 20 + 1000, (entry, record) => {
      if (out.length === pageSize) return false;
      const letter = this.letterOf(entry, record);
      if (!room.take(letterBytes(letter))) return false;
      out.push(letter);
      return true;
    });
    // A scan that stopped (a full page, or its bound over entries that do not match) goes on from its cursor.
    return {
      deadLetters: await this.withMaxAttempts(out),
      next: next === undefined ? "" : encodeCursor(next),
    };
  }

  /** One entry whole: its last error, every attempt's error, the task's input, the run input and its parents' outputs. */
  async get(idText: string): Promise<GetDeadLetterResponse> {
    const id = parseEntryId(idText);
    const { redis, keys } = this;
    const k = keys.run(id.runId);
    const [v] = await this.readViews([memberOf(id.runId, id.taskId)], Number.MAX_SAFE_INTEGER);
    if (v === undefined || v.entry.stored.g !== id.gen) throw entryNotFound(idText);
    const room = new AnswerRoom(this.maxResponseBytes);
    const [letter] = await this.withMaxAttempts([
      this.letterOf({ ...v.entry, member: "", score: 0 }, v.record),
    ]);
    const answer = create(GetDeadLetterResponseSchema, { deadLetter: letter });
    room.take(letterBytes(letter as DeadLetter) + 64);
    // Every attempt's error, the latest first as long as they fit, then in order.
    const fields = Array.from({ length: v.entry.stored.a + 1 }, (_, a) => `h:${a}:${id.taskId}`);
    const history = await redis.hmget(k.tasks, ...fields);
    for (let a = history.length - 1; a >= 0; a--) {
      const raw = history[a];
      if (raw === null || raw === undefined) continue;
      const h = JSON.parse(raw) as { t: string; m: string; d: string; at: number; w: string };
      const bytes = 64 + textSize(h.t) + textSize(h.m) + textSize(h.d) + textSize(h.w);
      if (!room.take(bytes)) {
        answer.omittedFields.push("attempt_errors");
        break;
      }
      answer.attemptErrors.unshift(
        create(AttemptErrorSchema, {
          attempt: a,
          error: create(TaskErrorSchema, { type: h.t, message: h.m, details: h.d }),
          time: timestampFromMs(h.at),
          workerId: h.w,
        }),
      );
    }
    const loaded = await this.workflows.get(v.entry.workflow, v.entry.version);
    const task = loaded.compiled.byId.get(id.taskId);
    if (task?.input !== undefined) {
      const measured = measuredValue(JSON.stringify(task.input as JsonValue));
      if (room.take(measured.bytes + 6)) answer.input = measured.value;
      else answer.omittedFields.push("input");
    }
    const want = (field: string, set: (v: Value) => void, omit: () => void, key = k.tasks) => ({
      key,
      field,
      storedBytes: 0,
      measure: (text: string) => {
        const m = measuredValue(text);
        set(m.value);
        return m.bytes;
      },
      include: () => {},
      omit,
    });
    const sizes = await redis
      .pipeline([
        ["hstrlen", k.run, "in"],
        ...(task?.parents ?? []).map((p) => ["hstrlen", k.tasks, `o:${p}`]),
      ])
      .exec();
    for (const [err] of sizes ?? []) if (err !== null) throw err;
    const sizeAt = (i: number) => Number(sizes?.[i]?.[1] ?? 0);
    let lostInput = false;
    room.want({
      ...want(
        "in",
        (value) => {
          answer.runInput = value;
        },
        () => {
          lostInput = true;
          answer.runInput = undefined;
        },
        k.run,
      ),
      storedBytes: sizeAt(0),
    });
    let lostParents = false;
    (task?.parents ?? []).forEach((p, i) => {
      room.want({
        ...want(
          `o:${p}`,
          (value) => {
            answer.parentOutputs[p] = value;
          },
          () => {
            lostParents = true;
            delete answer.parentOutputs[p];
          },
        ),
        storedBytes: sizeAt(i + 1) + textSize(p),
      });
    });
    await room.read(redis);
    if (lostInput) answer.omittedFields.push("run_input");
    if (lostParents) answer.omittedFields.push("parent_outputs");
    return answer;
  }

  /** Reads entries by member ("<runId>/<taskId>"), one script call each in one pipeline; undefined where none. */
  async readViews(
    members: readonly string[],
    cap: number,
  ): Promise<
    ({ entry: Omit<ListedEntry, "member" | "score">; record: string; recordBytes: number } | undefined)[]
  > {
    if (members.length === 0) return [];
    // The entries' runs are in as many slots: spread by node on a Cluster.
    const pipeline = anySlotPipeline(this.redis);
    const parts = members.map((m) => {
      const slash = m.indexOf("/");
      return { runId: m.slice(0, slash), taskId: m.slice(slash + 1) };
    });
    for (const p of parts) {
      const k = this.keys.run(p.runId);
      (
        pipeline as unknown as { weftDeadLetterView: (...args: (string | number)[]) => void }
      ).weftDeadLetterView(k.run, k.tasks, p.taskId, cap);
    }
    const rows = (await pipeline.exec()) ?? [];
    return parts.map((p, i) => {
      const [err, value] = rows[i] ?? [null, null];
      if (err !== null) throw err;
      const row = value as (string | number)[];
      if (row[0] === "" || row[0] === undefined) return undefined;
      const stored = JSON.parse(String(row[0])) as StoredEntry;
      return {
        entry: {
          id: { runId: p.runId, taskId: p.taskId, gen: stored.g },
          stored,
          workflow: String(row[1]),
          version: Number(row[2]),
        },
        record: String(row[3] ?? ""),
        recordBytes: Number(row[4] ?? 0),
      };
    });
  }

  /** An entry as the API shows it, from what readViews read. */
  async letter(entry: Omit<ListedEntry, "member" | "score">, record: string): Promise<DeadLetter> {
    return (
      await this.withMaxAttempts([this.letterOf({ ...entry, member: "", score: 0 }, record)])
    )[0] as DeadLetter;
  }

  /** A listed entry as the API shows it (max_attempts filled in by withMaxAttempts). */
  private letterOf(entry: ListedEntry, record: string): DeadLetter {
    const r =
      record === "" ? {} : (JSON.parse(record) as { e?: { t: string; m?: string; d?: string }; x?: string });
    const letter = create(DeadLetterSchema, {
      id: formatEntryId(entry.id),
      runId: entry.id.runId,
      workflow: entry.workflow,
      workflowVersion: entry.version,
      taskId: entry.id.taskId,
      queue: entry.stored.q,
      handler: entry.stored.h,
      attempts: entry.stored.a,
      error: create(TaskErrorSchema, {
        type: r.e?.t ?? entry.stored.et,
        message: r.e?.m ?? "",
        details: r.e?.d ?? "",
      }),
      failTime: timestampFromMs(entry.stored.t),
    });
    if (r.x === "e") letter.omittedFields.push("error");
    return letter;
  }

  /** Fills in each entry's max_attempts from its workflow version (cached by the store). */
  private async withMaxAttempts(letters: DeadLetter[]): Promise<DeadLetter[]> {
    for (const letter of letters) {
      const loaded = await this.workflows.get(letter.workflow, letter.workflowVersion).catch(() => undefined);
      letter.maxAttempts = loaded?.compiled.byId.get(letter.taskId)?.retry.maxAttempts ?? 0;
    }
    return letters;
  }
}

/** Bytes an entry takes in an answer: an upper bound. */
function letterBytes(l: DeadLetter): number {
  return (
    200 +
    textSize(l.id) +
    textSize(l.workflow) +
    textSize(l.taskId) +
    textSize(l.queue) +
    textSize(l.handler) +
    textSize(l.error?.type ?? "") +
    textSize(l.error?.message ?? "") +
    textSize(l.error?.details ?? "")
  );
}
