import type { JsonValue } from "@bufbuild/protobuf";
import { Code, ConnectError } from "@connectrpc/connect";
import type { Run } from "@weft/sdk/gen/weft/v1/run_pb.js";
import { OverlapPolicy } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import type { Logger } from "pino";
import type { RedisClient } from "../../redis/redis.js";
import { isRedisUnavailableError } from "../../redis/redis.js";
import type { RunOps } from "../runs/index.js";
import { idempotentRunId, type Keys } from "../shared/index.js";
import type { ClockCache } from "./clock-cache.js";
import { planFires } from "./fire-plan.js";
import { type Advance, type ScheduleRecord, ScheduleStore } from "./schedule-store.js";
import { TriggerBatch } from "./trigger-batch.js";

/** What this replica's schedules did, for /metrics. */
export interface ScheduleStats {
  /** Runs started by fires (on time or catching up, or a buffered fire). */
  fires: number;
  /** Fire times skipped by the overlap policy. */
  skips: number;
  /** Fire times missed (older than the catch-up window, or over its bound). */
  misses: number;
  /** Fires that could not start a run (the workflow is gone, the input over the limit). */
  failures: number;
  /** Sum and count of the fire lags (from due time to run started), in seconds. */
  lagSecondsSum: number;
  lagCount: number;
  /** Lag of the latest fire, in seconds. */
  lastLagSeconds: number;
}

/** How soon a schedule with a buffered fire checks again whether the previous run ended. */
const BUFFER_RECHECK_MS = 1000;
/** ...once the buffered fire has waited a minute. */
const BUFFER_RECHECK_SLOW_MS = 5000;

/** The idempotency key of a schedule's run for a fire time: the same on every replica and every retry. */
export function fireKey(scheduleId: string, fireTime: number): string {
  return `sched:${scheduleId}:${new Date(fireTime).toISOString()}`;
}

/** What a fire step works with. */
export interface ScheduleFiresDeps {
  redis: RedisClient;
  keys: Keys;
  logger: Logger;
  store: ScheduleStore;
  clocks: ClockCache;
  runs: RunOps;
  /** How long finished runs are kept, in ms: a schedule's index of runs is pruned past it (and a day). */
  runRetentionMs: number;
}

/** Why a run could not be started, when it is for good (not Redis being away). */
function permanentProblem(err: unknown): string | undefined {
  if (isRedisUnavailableError(err)) return undefined;
  const error = ConnectError.from(err);
  if (
    [Code.NotFound, Code.ResourceExhausted, Code.InvalidArgument, Code.FailedPrecondition].includes(
      error.code,
    )
  )
    return error.rawMessage;
  return undefined;
}

/**
 * One step of a claimed schedule: starts its buffered fire once the previous run ended, then handles
 * the fire time due under the overlap policy (see fire-plan.ts for catching up), records what it did
 * with a compare-and-set on the schedule's hash, and hands the schedule back to the due set at its
 * next due time. Every part can be repeated: a run's id is a function of the schedule and the fire
 * time, so a step that a crash cut short and another replica repeats starts the same run.
 */
export class ScheduleFires {
  readonly stats: ScheduleStats = {
    fires: 0,
    skips: 0,
    misses: 0,
    failures: 0,
    lagSecondsSum: 0,
    lagCount: 0,
    lastLagSeconds: 0,
  };

  private readonly batch: TriggerBatch;

  constructor(private readonly deps: ScheduleFiresDeps) {
    this.batch = new TriggerBatch(deps.runs);
  }

  /**
   * Handles a schedule claimed at `now` (Redis's clock) under `lease`; `skewMs` is Redis's clock
   * minus this replica's.
   */
  async step(id: string, now: number, lease: number, skewMs = 0): Promise<void> {
    const { store } = this.deps;
    const record = await store.read(id);
    if (record === undefined || record.status !== "A" || record.nextFire === undefined) {
      await store.requeue(id, lease, undefined);
      return;
    }
    const { spec } = record;
    const needsPrevious = spec.overlap !== OverlapPolicy.ALLOW_ALL || record.buffered !== undefined;
    let previousRunning = needsPrevious && (await this.isRunning(record.lastRunId));

    // A buffered fire that cannot start for good is dropped with the next record.
    let dropBuffer = false;
    if (record.buffered !== undefined && !previousRunning) {
      const started = await this.start(record, record.buffered, skewMs);
      if ("run" in started) {
        await store.bufferStarted(id, record.buffered, started.run.id);
        record.lastRunId = started.run.id;
        previousRunning = true;
      } else {
        dropBuffer = true;
      }
      record.buffered = undefined;
    }

    const nextFire = record.nextFire;
    const due = ScheduleStore.dueOf(id, spec, nextFire);
    if (due > now) {
      await store.requeue(id, lease, this.recheck(record, due, now));
      return;
    }

    const plan = planFires({
      clock: this.deps.clocks.of(spec),
      nextFire,
      now,
      catchUpWindowMs: spec.catchUpWindowMs,
      maxCatchUp: spec.maxCatchUp,
    });
    const advance: Advance = { nextFire: plan.next, missed: plan.missed };
    if (plan.fire !== undefined) {
      advance.handled = plan.fire;
      await this.handle(record, plan.fire, previousRunning, skewMs, advance);
    }
    if (dropBuffer && advance.buffered === undefined) advance.buffered = null;
    const pruneBefore = now - this.deps.runRetentionMs - 86_400_000;
    const { outcome, status } = await store.advance(record, advance, now, pruneBefore);
    if (outcome === "ok") {
      this.stats.misses += plan.missed;
      if (advance.skipped === true) this.stats.skips++;
      if (plan.missed > 0)
        this.deps.logger.warn({ schedule: id, missed: plan.missed }, "schedule: fire times missed");
    }
    if (outcome !== "ok" || status !== "A" || plan.next === undefined) {
      // Stale: a call moved the schedule (its own write set the due time) or another step did.
      await store.requeue(id, lease, outcome === "ok" ? undefined : now);
      return;
    }
    const buffered = advance.buffered === undefined ? record.buffered : (advance.buffered ?? undefined);
    const bufferedAt = typeof advance.buffered === "number" ? now : record.bufferedAt;
    await store.requeue(
      id,
      lease,
      this.recheck({ ...record, buffered, bufferedAt }, ScheduleStore.dueOf(id, spec, plan.next), now),
    );
  }

  /** Decides what fire time `fireTime` does under the overlap policy, and does it. */
  private async handle(
    record: ScheduleRecord,
    fireTime: number,
    previousRunning: boolean,
    skewMs: number,
    advance: Advance,
  ): Promise<void> {
    const { spec } = record;
    // A step that a crash cut short may have started the fire's run already: it counts as started.
    const runId = idempotentRunId(spec.workflow, fireKey(record.id, fireTime));
    if ((await this.deps.redis.exists(this.deps.keys.run(runId).run)) === 1) {
      Object.assign(advance, { runId, fired: true, lastError: "" });
      return;
    }
    if (previousRunning) {
      switch (spec.overlap) {
        case OverlapPolicy.ALLOW_ALL:
          break;
        case OverlapPolicy.BUFFER_ONE:
          if (record.buffered === undefined) advance.buffered = fireTime;
          else advance.skipped = true;
          break;
        case OverlapPolicy.CANCEL_PREVIOUS:
          await this.cancelPrevious(record, fireTime);
          break;
        default:
          advance.skipped = true;
      }
      if (advance.skipped === true) {
        this.deps.logger.info(
          { schedule: record.id, fireTime: new Date(fireTime).toISOString(), runId: record.lastRunId },
          "schedule: fire skipped, the previous run is still running",
        );
      }
      if (advance.skipped === true || advance.buffered !== undefined) return;
    }
    const started = await this.start(record, fireTime, skewMs);
    if ("problem" in started) advance.lastError = started.problem;
    else Object.assign(advance, { runId: started.run.id, fired: true, lastError: "" });
  }

  /**
   * Starts the run of a fire time, or says why it cannot start for good (logged). Throws when Redis
   * is away: the step is tried again.
   */
  private async start(
    record: ScheduleRecord,
    fireTime: number,
    skewMs: number,
  ): Promise<{ run: Run; created: boolean } | { problem: string }> {
    const { spec } = record;
    try {
      const started = await this.batch.start({
        workflow: spec.workflow,
        version: spec.version,
        input: JSON.parse(record.inputText) as JsonValue,
        idempotencyKey: fireKey(record.id, fireTime),
        schedule: { id: record.id, fireTime },
      });
      if (started.created) {
        const lag = Math.max(0, Date.now() + skewMs - ScheduleStore.dueOf(record.id, spec, fireTime)) / 1000;
        Object.assign(this.stats, {
          fires: this.stats.fires + 1,
          lagSecondsSum: this.stats.lagSecondsSum + lag,
          lagCount: this.stats.lagCount + 1,
          lastLagSeconds: lag,
        });
        this.deps.logger.debug(
          { schedule: record.id, runId: started.run.id, fireTime: new Date(fireTime).toISOString() },
          "schedule: run started",
        );
      }
      return started;
    } catch (err) {
      const problem = permanentProblem(err);
      if (problem === undefined) throw err;
      this.stats.failures++;
      this.deps.logger.error({ schedule: record.id, problem }, "schedule: the fire could not start a run");
      return { problem };
    }
  }

  /** CANCEL_PREVIOUS: cancels the schedule's last run (gone already: nothing to do). */
  private async cancelPrevious(record: ScheduleRecord, fireTime: number): Promise<void> {
    const reason = `cancelled by schedule "${record.id}": its fire of ${new Date(fireTime).toISOString()} replaces it (overlap policy CANCEL_PREVIOUS)`;
    try {
      await this.deps.runs.cancel(record.lastRunId, reason);
    } catch (err) {
      if (ConnectError.from(err).code !== Code.NotFound) throw err;
    }
  }

  /** Whether a run is still running (a run that expired is not). */
  private async isRunning(runId: string): Promise<boolean> {
    if (runId === "") return false;
    return (await this.deps.redis.hget(this.deps.keys.run(runId).run, "s")) === "R";
  }

  /** When to look at a schedule again: at `due`, or sooner while a buffered fire waits. */
  private recheck(record: ScheduleRecord, due: number, now: number): number {
    if (record.buffered === undefined) return due;
    const waited = now - (record.bufferedAt ?? now);
    return Math.min(due, now + (waited < 60_000 ? BUFFER_RECHECK_MS : BUFFER_RECHECK_SLOW_MS));
  }
}
