import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Schedule, ScheduleSchema, ScheduleStatus } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import { runStatusOf } from "../runs/index.js";
import type { ClockCache } from "./clock-cache.js";
import { specToProto } from "./schedule-spec.js";
import type { ScheduleRecord } from "./schedule-store.js";

const STATUS = { A: ScheduleStatus.ACTIVE, P: ScheduleStatus.PAUSED, E: ScheduleStatus.ENDED } as const;

const time = (ms: number | undefined) => (ms === undefined || ms <= 0 ? undefined : timestampFromMs(ms));

/**
 * The Schedule message of a stored schedule with up to `shown` next fire times (the first is stored;
 * each other is a computation of its clock); `lastRunStatus` is its last run's stored status code.
 */
export function scheduleOf(
  record: ScheduleRecord,
  clocks: ClockCache,
  lastRunStatus: string | null,
  shown: number,
): Schedule {
  const nextFireTimes: number[] = [];
  if (record.status === "A" && record.nextFire !== undefined) {
    let t: number | undefined = record.nextFire;
    while (t !== undefined && nextFireTimes.length < shown) {
      nextFireTimes.push(t);
      t = nextFireTimes.length < shown ? clocks.of(record.spec).next(t) : undefined;
    }
  }
  return create(ScheduleSchema, {
    id: record.id,
    spec: specToProto(record.spec, record.inputText),
    status: STATUS[record.status],
    nextFireTimes: nextFireTimes.map((t) => timestampFromMs(t)),
    lastFireTime: time(record.lastFire),
    lastRunId: record.lastRunId,
    lastRunStatus: runStatusOf(lastRunStatus),
    firedCount: BigInt(record.fired),
    skippedCount: BigInt(record.skipped),
    missedCount: BigInt(record.missed),
    bufferedFireTime: time(record.buffered),
    createTime: time(record.createMs),
    updateTime: time(record.updateMs),
    pauseNote: record.status === "P" ? record.pauseNote : "",
    lastError: record.lastError,
  });
}
