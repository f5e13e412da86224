import type { ServiceImpl } from "@connectrpc/connect";
import type { ScheduleService } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import type { Engine } from "../engine/engine.js";
import { pageSizeOf, RequestCheck } from "./request-checks.js";

/** weft.v1.ScheduleService: schedules that start runs on a clock. */
export function scheduleService(engine: Engine): ServiceImpl<typeof ScheduleService> {
  const { schedules } = engine;
  const checkId = (id: string) => new RequestCheck().name(id, "schedule_id").done();
  return {
    async createSchedule(req) {
      if (req.scheduleId !== "") checkId(req.scheduleId);
      return { schedule: await schedules.create(req.scheduleId, req.spec, req.paused) };
    },

    async getSchedule(req) {
      checkId(req.scheduleId);
      return { schedule: await schedules.get(req.scheduleId) };
    },

    async listSchedules(req) {
      const after = req.pageToken === "" ? "" : Buffer.from(req.pageToken, "base64url").toString();
      new RequestCheck()
        .pageSize(req.pageSize)
        .require(
          req.pageToken === "" ||
            (/^[A-Za-z0-9_.-]{1,128}$/.test(after) &&
              Buffer.from(after).toString("base64url") === req.pageToken),
          "page_token",
          "is not a token returned by ListSchedules",
        )
        .done();
      const { schedules: page, next } = await schedules.list(pageSizeOf(req.pageSize), after);
      return { schedules: page, nextPageToken: next === "" ? "" : Buffer.from(next).toString("base64url") };
    },

    async updateSchedule(req) {
      checkId(req.scheduleId);
      return { schedule: await schedules.update(req.scheduleId, req.spec) };
    },

    async deleteSchedule(req) {
      checkId(req.scheduleId);
      await schedules.delete(req.scheduleId);
      return {};
    },

    async pauseSchedule(req) {
      new RequestCheck()
        .name(req.scheduleId, "schedule_id")
        .require(req.note.length <= 1024, "note", "must be at most 1024 characters")
        .done();
      return { schedule: await schedules.pause(req.scheduleId, req.note) };
    },

    async resumeSchedule(req) {
      checkId(req.scheduleId);
      return { schedule: await schedules.resume(req.scheduleId) };
    },

    async triggerSchedule(req) {
      new RequestCheck()
        .name(req.scheduleId, "schedule_id")
        .require(req.idempotencyKey.length <= 128, "idempotency_key", "must be at most 128 characters")
        .done();
      return schedules.trigger(req.scheduleId, req.idempotencyKey);
    },

    async backfillSchedule(req) {
      checkId(req.scheduleId);
      const { runIds, started } = await schedules.backfill(req.scheduleId, req.startTime, req.endTime);
      return { runIds, startedCount: started };
    },
  };
}
