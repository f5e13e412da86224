import { defineScript, isCluster, type RedisClient } from "../../redis/redis.js";
import type { Keys } from "../shared/index.js";
import { jitterOf } from "./clock.js";
import {
  ADVANCE,
  BUFFER_STARTED,
  CLAIM,
  CREATE,
  PAUSE,
  RECORD_RUN,
  REQUEUE,
  RESUME,
  UPDATE,
} from "./schedule-scripts.js";
import type { StoredSpec } from "./schedule-spec.js";

/** A schedule's status as stored: active, paused, ended. */
export type StoredStatus = "A" | "P" | "E";

/** A schedule as stored in its hash (see schedule-scripts.ts). */
export interface ScheduleRecord {
  id: string;
  spec: StoredSpec;
  inputText: string;
  status: StoredStatus;
  /** The next fire time; undefined when none is left. */
  nextFire: number | undefined;
  /** `nf` and `gen` as stored, for the fire step's compare-and-set. */
  cas: { nf: string; gen: string };
  lastFire: number | undefined;
  lastRunId: string;
  fired: number;
  skipped: number;
  missed: number;
  buffered: number | undefined;
  bufferedAt: number | undefined;
  createMs: number;
  updateMs: number;
  pauseNote: string;
  lastError: string;
}

/** What a fire step records (see ADVANCE in schedule-scripts.ts). */
export interface Advance {
  nextFire: number | undefined;
  handled?: number;
  runId?: string;
  fired?: boolean;
  skipped?: boolean;
  missed?: number;
  /** undefined: keep; null: drop; a number: keep this fire time. */
  buffered?: number | null;
  /** undefined: keep; "": clear. */
  lastError?: string;
}

/** What a claim took: Redis's time, the lease's score, the earliest score left, and the ids. */
export interface Claim {
  now: number;
  lease: number;
  head: number | undefined;
  ids: string[];
}

type Caller = (...args: (string | number)[]) => Promise<unknown>;

const SCRIPTS = {
  weftSchedCreate: [1, CREATE],
  weftSchedUpdate: [1, UPDATE],
  weftSchedPause: [1, PAUSE],
  weftSchedResume: [1, RESUME],
  weftSchedAdvance: [2, ADVANCE],
  weftSchedBufferStarted: [1, BUFFER_STARTED],
  weftSchedRecordRun: [1, RECORD_RUN],
  weftSchedClaim: [1, CLAIM],
  weftSchedRequeue: [1, REQUEUE],
} as const;

/**
 * Schedules in Redis: each one's hash (hash-tagged by its id), the index of ids for listing, and the
 * due set, which every replica's firing loop reads. The due set is a hint, the hash the truth: a
 * call that makes a schedule due (create, update, resume) writes its due time before and after
 * changing the hash, and the firing loop drops an entry only when it still holds the lease it
 * claimed it with and the hash says the schedule is not active, so an active schedule never
 * leaves the set.
 */
export class ScheduleStore {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
  ) {
    for (const [name, [, lua]] of Object.entries(SCRIPTS)) defineScript(redis, name, lua);
  }

  /** A script's caller: its keys, then its arguments (the key count is added here). */
  private script(name: keyof typeof SCRIPTS): Caller {
    const fn = (this.redis as unknown as Record<string, Caller>)[name] as Caller;
    const numberOfKeys = SCRIPTS[name][0];
    return (...args) => fn.apply(this.redis, [numberOfKeys, ...args]);
  }

  /** The command that announces on the wake channel: sharded pub/sub on a Cluster. */
  private get publishCommand(): "PUBLISH" | "SPUBLISH" {
    return isCluster(this.redis) ? "SPUBLISH" : "PUBLISH";
  }

  /** When a schedule whose next fire time is `nextFire` is due (its fire time plus its jitter). */
  static dueOf(id: string, spec: StoredSpec, nextFire: number): number {
    return nextFire + jitterOf(id, nextFire, spec.jitterMs);
  }

  async read(id: string): Promise<ScheduleRecord | undefined> {
    return recordOf(await this.redis.hgetall(this.keys.schedule(id)));
  }

  /** Reads schedules one command each (their hashes are in different slots). */
  readMany(ids: readonly string[]): Promise<(ScheduleRecord | undefined)[]> {
    return Promise.all(ids.map((id) => this.read(id)));
  }

  /** Ids after `after` in order, at most `limit`. */
  async ids(after: string, limit: number): Promise<string[]> {
    return this.redis.zrangebylex(
      this.keys.scheduleIndex(),
      after === "" ? "-" : `(${after}`,
      "+",
      "LIMIT",
      0,
      limit,
    );
  }

  /** Creates a schedule; false when the id is taken. */
  async create(
    id: string,
    spec: StoredSpec,
    inputText: string,
    paused: boolean,
    nextFire: number,
    now: number,
  ): Promise<boolean> {
    // Listed before it exists (ListSchedules skips ids without a hash), so that it is never unlisted.
    await this.redis.zadd(this.keys.scheduleIndex(), 0, id);
    const due = paused ? undefined : ScheduleStore.dueOf(id, spec, nextFire);
    if (due !== undefined) await this.redis.zadd(this.keys.scheduleDue(), "LT", due, id);
    const created =
      (await this.script("weftSchedCreate")(
        this.keys.schedule(id),
        id,
        JSON.stringify(spec),
        inputText,
        paused ? "P" : "A",
        nextFire,
        now,
      )) === 1;
    if (created && due !== undefined) await this.makeDue(id, due);
    return created;
  }

  /** Replaces a schedule's spec; the status after, or undefined when it does not exist. */
  async update(
    id: string,
    spec: StoredSpec,
    inputText: string,
    nextFire: number | undefined,
    now: number,
  ): Promise<StoredStatus | undefined> {
    const due = nextFire === undefined ? undefined : ScheduleStore.dueOf(id, spec, nextFire);
    if (due !== undefined) await this.redis.zadd(this.keys.scheduleDue(), "LT", due, id);
    const status = (await this.script("weftSchedUpdate")(
      this.keys.schedule(id),
      JSON.stringify(spec),
      inputText,
      nextFire ?? "",
      now,
    )) as StoredStatus | null;
    if (status === "A" && due !== undefined) await this.makeDue(id, due);
    return status ?? undefined;
  }

  /** Pauses a schedule; its status before, or undefined when it does not exist. */
  async pause(id: string, note: string, now: number): Promise<StoredStatus | undefined> {
    // Its due entry stays: the firing loop drops it when it comes due and finds the schedule paused.
    const status = (await this.script("weftSchedPause")(
      this.keys.schedule(id),
      note,
      now,
    )) as StoredStatus | null;
    return status ?? undefined;
  }

  /** Resumes a paused schedule; its status after, or undefined when it does not exist. */
  async resume(
    id: string,
    spec: StoredSpec,
    nextFire: number | undefined,
    now: number,
  ): Promise<StoredStatus | undefined> {
    const due = nextFire === undefined ? undefined : ScheduleStore.dueOf(id, spec, nextFire);
    if (due !== undefined) await this.redis.zadd(this.keys.scheduleDue(), "LT", due, id);
    const status = (await this.script("weftSchedResume")(
      this.keys.schedule(id),
      nextFire ?? "",
      now,
    )) as StoredStatus | null;
    if (status === "A" && due !== undefined) await this.makeDue(id, due);
    return status ?? undefined;
  }

  /**
   * Deletes a schedule; false when it did not exist. The index of its runs outlives it by the
   * runs' retention, for ListRuns by schedule.
   */
  async delete(id: string, runsRetentionMs: number): Promise<boolean> {
    const deleted = (await this.redis.del(this.keys.schedule(id))) === 1;
    await this.redis.pexpire(this.keys.scheduleRuns(id), runsRetentionMs);
    await this.redis.zrem(this.keys.scheduleIndex(), id);
    await this.redis.zrem(this.keys.scheduleDue(), id);
    return deleted;
  }

  /** Records a fire step (see ADVANCE); "ok", "stale" (another step or a call moved it) or "gone". */
  async advance(
    record: ScheduleRecord,
    a: Advance,
    now: number,
    pruneBefore: number,
  ): Promise<{ outcome: "ok" | "stale" | "gone"; status?: StoredStatus }> {
    const reply = (await this.script("weftSchedAdvance")(
      this.keys.schedule(record.id),
      this.keys.scheduleRuns(record.id),
      record.cas.nf,
      record.cas.gen,
      a.nextFire ?? "",
      a.handled ?? "",
      a.runId ?? "",
      a.fired === true ? 1 : 0,
      a.skipped === true ? 1 : 0,
      a.missed ?? 0,
      a.buffered === undefined ? "" : a.buffered === null ? "-" : a.buffered,
      now,
      pruneBefore,
      a.lastError ?? "-",
    )) as string[];
    return { outcome: reply[0] as "ok" | "stale" | "gone", status: reply[1] as StoredStatus | undefined };
  }

  /** Records the run a buffered fire started; false when that fire is no longer the one buffered. */
  async bufferStarted(id: string, fireTime: number, runId: string): Promise<boolean> {
    return (await this.script("weftSchedBufferStarted")(this.keys.schedule(id), fireTime, runId)) === 1;
  }

  /** Records a run TriggerSchedule started as the schedule's last; false when the schedule is gone. */
  async recordRun(id: string, runId: string): Promise<boolean> {
    return (await this.script("weftSchedRecordRun")(this.keys.schedule(id), runId)) === 1;
  }

  /** Claims up to `max` due schedules for `leaseMs` (see CLAIM). */
  async claim(leaseMs: number, max: number): Promise<Claim> {
    const reply = (await this.script("weftSchedClaim")(this.keys.scheduleDue(), leaseMs, max)) as (
      | string
      | number
    )[];
    const head = reply[2] === "" ? undefined : Number(reply[2]);
    return { now: Number(reply[0]), lease: Number(reply[1]), head, ids: reply.slice(3).map(String) };
  }

  /** The earliest due time in the due set; undefined when it is empty. */
  async head(): Promise<number | undefined> {
    const [, score] = await this.redis.zrange(this.keys.scheduleDue(), 0, 0, "WITHSCORES");
    return score === undefined ? undefined : Number(score);
  }

  /** Hands a claimed schedule back at `due`, or out of the due set (undefined), if still under `lease`. */
  async requeue(id: string, lease: number, due: number | undefined): Promise<void> {
    await this.script("weftSchedRequeue")(
      this.keys.scheduleDue(),
      id,
      lease,
      due ?? "-",
      this.keys.scheduleWake(),
      this.publishCommand,
    );
  }

  /** Sets a schedule's due time and wakes the firing loops when it is the earliest. */
  private async makeDue(id: string, due: number): Promise<void> {
    await this.redis.zadd(this.keys.scheduleDue(), due, id);
    await this.redis.call(this.publishCommand, this.keys.scheduleWake(), String(due));
  }
}

/** A schedule record from its hash; undefined for an empty hash (no schedule). */
function recordOf(h: Record<string, string>): ScheduleRecord | undefined {
  if (h.id === undefined || h.spec === undefined) return undefined;
  const num = (v: string | undefined) => (v === undefined || v === "" ? undefined : Number(v));
  return {
    id: h.id,
    spec: JSON.parse(h.spec) as StoredSpec,
    inputText: h.in ?? "null",
    status: (h.st ?? "A") as StoredStatus,
    nextFire: num(h.nf),
    cas: { nf: h.nf ?? "", gen: h.gen ?? "" },
    lastFire: num(h.lt),
    lastRunId: h.lr ?? "",
    fired: Number(h.fc ?? 0),
    skipped: Number(h.sk ?? 0),
    missed: Number(h.ms ?? 0),
    buffered: num(h.bf),
    bufferedAt: num(h.bw),
    createMs: Number(h.ct ?? 0),
    updateMs: Number(h.ut ?? 0),
    pauseNote: h.pn ?? "",
    lastError: h.le ?? "",
  };
}
