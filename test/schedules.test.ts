import { randomUUID } from "node:crypto";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { toBinary } from "@bufbuild/protobuf";
import { Code, type Interceptor } from "@connectrpc/connect";
import { hashToken } from "@weft/daemon";
import {
  ListSchedulesResponseSchema,
  OverlapPolicy,
  ScheduleStatus,
} from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { at, msOf, runsOfSchedule, scheduleClient } from "./support/schedules.js";
import { json, RunStatus, rpcError, task, value, type WeftClients, weftClients } from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let c: WeftClients;
let s: ReturnType<typeof scheduleClient>;
const wf = `sched-wf-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({
    redisUrl: redis.url,
    args: ["--max-payload-bytes", "4KiB", "--max-response-bytes", "80KiB"],
  });
  c = weftClients(weftd.address);
  s = scheduleClient(weftd.address);
  await c.workflows.submitWorkflow({
    definition: { name: wf, tasks: [task("a", [], { queue: `${wf}-q` })] },
  });
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

const id = () => `s-${randomUUID().slice(0, 8)}`;

describe("ScheduleService", () => {
  it("creates a cron schedule in a time zone and shows its next fire times, defaults and counts", async () => {
    const scheduleId = id();
    const { schedule } = await s.createSchedule({
      scheduleId,
      spec: {
        workflow: wf,
        cron: "30 2 * * *",
        timeZone: "Europe/Paris",
        input: value({ day: 1 }),
        note: "nightly",
      },
    });
    expect(schedule?.id).toBe(scheduleId);
    expect(schedule?.status).toBe(ScheduleStatus.ACTIVE);
    expect(schedule?.spec?.overlapPolicy).toBe(OverlapPolicy.SKIP);
    expect(schedule?.spec?.catchUpWindow?.seconds).toBe(3600n);
    expect(schedule?.spec?.maxCatchUpRuns).toBe(10);
    expect(schedule?.spec?.note).toBe("nightly");
    expect(json(schedule?.spec?.input)).toEqual({ day: 1 });
    const next = (schedule?.nextFireTimes ?? []).map(msOf);
    expect(next).toHaveLength(5);
    for (const t of next) {
      const local = new Intl.DateTimeFormat("en-GB", {
        timeZone: "Europe/Paris",
        hour: "2-digit",
        minute: "2-digit",
        hourCycle: "h23",
      }).format(t);
      // 02:30 local, or 03:00 on a spring-forward day.
      expect(["02:30", "03:00"]).toContain(local);
    }
    expect(next[0]).toBeGreaterThan(Date.now());
    expect(schedule?.firedCount).toBe(0n);
    expect(schedule?.skippedCount).toBe(0n);
    expect(schedule?.missedCount).toBe(0n);
    expect((await s.getSchedule({ scheduleId })).schedule?.nextFireTimes.map(msOf)).toEqual(next);
  });

  it("refuses an id in use with ALREADY_EXISTS and makes an id when none is given", async () => {
    const scheduleId = id();
    await s.createSchedule({ scheduleId, spec: { workflow: wf, cron: "@daily" } });
    const err = await rpcError(s.createSchedule({ scheduleId, spec: { workflow: wf, cron: "@hourly" } }));
    expect(err.code).toBe(Code.AlreadyExists);
    expect(err.rawMessage).toBe(`schedule "${scheduleId}" already exists`);
    const made = await s.createSchedule({ spec: { workflow: wf, interval: { seconds: 3600n } } });
    expect(made.schedule?.id).toMatch(/^[0-9a-f-]{36}$/);
  });

  it("names the field of every bad input", async () => {
    const bad: [Record<string, unknown>, Code, string][] = [
      [
        { cron: "61 * * * *" },
        Code.InvalidArgument,
        "spec.cron: is not a valid cron expression: Invalid value for minute: 61",
      ],
      [{ cron: "* * *" }, Code.InvalidArgument, "spec.cron: is not a valid cron expression"],
      [{ cron: "* * * * * * *" }, Code.InvalidArgument, "spec.cron: is not a valid cron expression"],
      [
        { cron: "0 0 30 2 *" },
        Code.InvalidArgument,
        "spec.cron: matches no time to come: the schedule would never fire",
      ],
      [
        { cron: "@daily", timeZone: "Mars/Olympus_Mons" },
        Code.InvalidArgument,
        'spec.time_zone: "Mars/Olympus_Mons" is not an IANA time zone',
      ],
      [{}, Code.InvalidArgument, "spec.cron: set either cron or interval"],
      [
        { cron: "@daily", interval: { seconds: 60n } },
        Code.InvalidArgument,
        "spec.interval: cannot be set together with cron",
      ],
      [{ interval: { nanos: 500_000_000 } }, Code.InvalidArgument, "spec.interval: must be at least 1s"],
      [
        { interval: { seconds: 60n }, offset: { seconds: 60n } },
        Code.InvalidArgument,
        "spec.offset: must be less than the interval",
      ],
      [
        { interval: { seconds: 400n * 86_400n } },
        Code.InvalidArgument,
        "spec.interval: must be at most 366 days",
      ],
      [
        { interval: { seconds: -5n } },
        Code.InvalidArgument,
        "spec.interval: must be a non-negative duration",
      ],
      [
        { interval: { seconds: 60n }, timeZone: "UTC" },
        Code.InvalidArgument,
        "spec.time_zone: applies to cron only",
      ],
      [
        { cron: "@daily", jitter: { seconds: 7200n } },
        Code.InvalidArgument,
        "spec.jitter: must be at most 1h",
      ],
      [
        { cron: "@daily", catchUpWindow: { seconds: 1n } },
        Code.InvalidArgument,
        "spec.catch_up_window: must be between 10s and 7 days",
      ],
      [
        { cron: "@daily", maxCatchUpRuns: 101 },
        Code.InvalidArgument,
        "spec.max_catch_up_runs: must be between 1 and 100",
      ],
      [
        { cron: "@daily", note: "x".repeat(1025) },
        Code.InvalidArgument,
        "spec.note: must be at most 1024 characters",
      ],
      [
        { cron: "@daily", overlapPolicy: 9 },
        Code.InvalidArgument,
        "spec.overlap_policy: is not an overlap policy",
      ],
      [
        { cron: "@daily", endTime: at(Date.now() - 60_000) },
        Code.InvalidArgument,
        "spec.end_time: is in the past",
      ],
      [
        { cron: "@daily", startTime: at(Date.now() + 86_400_000), endTime: at(Date.now() + 3_600_000) },
        Code.InvalidArgument,
        "spec.end_time: must not be before start_time",
      ],
      [{ cron: "@daily", input: value({ big: "x".repeat(5000) }) }, Code.ResourceExhausted, "spec.input: "],
      [
        { cron: "@daily", workflow: "no-such-workflow" },
        Code.NotFound,
        'spec.workflow: workflow "no-such-workflow" not found',
      ],
      [
        { cron: "@daily", workflowVersion: 99 },
        Code.NotFound,
        `spec.workflow_version: workflow "${wf}" has no version 99`,
      ],
      [{ cron: "@daily", workflow: "" }, Code.InvalidArgument, "spec.workflow: is required"],
    ];
    for (const [spec, code, message] of bad) {
      const err = await rpcError(
        s.createSchedule({ scheduleId: id(), spec: { workflow: wf, ...spec } }),
      ).catch((e: Error) => {
        throw new Error(`${e.message}: expected ${message}`);
      });
      expect({ spec, code: Code[err.code], message: err.rawMessage }).toMatchObject({
        code: Code[code],
        message: expect.stringContaining(message),
      });
    }
    expect((await rpcError(s.createSchedule({ scheduleId: id() }))).rawMessage).toBe("spec: is required");
    expect(
      (await rpcError(s.createSchedule({ scheduleId: "bad id", spec: { workflow: wf, cron: "@daily" } })))
        .rawMessage,
    ).toBe("schedule_id: must be 1-128 characters from [A-Za-z0-9_.-]");
    const calls: [string, () => Promise<unknown>][] = [
      ["get", () => s.getSchedule({ scheduleId: "missing" })],
      ["pause", () => s.pauseSchedule({ scheduleId: "missing" })],
      ["resume", () => s.resumeSchedule({ scheduleId: "missing" })],
      ["delete", () => s.deleteSchedule({ scheduleId: "missing" })],
      ["trigger", () => s.triggerSchedule({ scheduleId: "missing" })],
      ["update", () => s.updateSchedule({ scheduleId: "missing", spec: { workflow: wf, cron: "@daily" } })],
      ["backfill", () => s.backfillSchedule({ scheduleId: "missing", startTime: at(0), endTime: at(1000) })],
    ];
    for (const [name, call] of calls) {
      const err = await rpcError(call());
      expect([name, Code[err.code], err.rawMessage]).toEqual([
        name,
        "NotFound",
        'schedule "missing" not found',
      ]);
    }
    const err = await rpcError(s.getSchedule({ scheduleId: "" }));
    expect([Code[err.code], err.rawMessage]).toEqual(["InvalidArgument", "schedule_id: is required"]);
    expect((await rpcError(s.listSchedules({ pageToken: "!!" }))).rawMessage).toBe(
      "page_token: is not a token returned by ListSchedules",
    );
    expect((await rpcError(c.workflows.listRuns({ scheduleId: "a b" }))).rawMessage).toBe(
      "schedule_id: must be 1-128 characters from [A-Za-z0-9_.-]",
    );
  });

  it("lists schedules by id, a page at a time", async () => {
    const prefix = `list-${randomUUID().slice(0, 6)}`;
    for (const n of [3, 1, 2])
      await s.createSchedule({ scheduleId: `${prefix}-${n}`, spec: { workflow: wf, cron: "@daily" } });
    const seen: string[] = [];
    let pageToken = "";
    do {
      const page = await s.listSchedules({ pageSize: 2, pageToken });
      expect(page.schedules.length).toBeLessThanOrEqual(2);
      seen.push(...page.schedules.map((x) => x.id));
      pageToken = page.nextPageToken;
    } while (pageToken !== "");
    expect(seen.filter((x) => x.startsWith(prefix))).toEqual([`${prefix}-1`, `${prefix}-2`, `${prefix}-3`]);
    expect([...seen].sort()).toEqual(seen);
  });

  it("keeps a page of schedules within the answer limit, the rest in the next pages", async () => {
    const prefix = `big-${randomUUID().slice(0, 6)}`;
    const input = value({ text: "x".repeat(3000) });
    for (let i = 0; i < 40; i++) {
      await s.createSchedule({
        scheduleId: `${prefix}-${String(i).padStart(2, "0")}`,
        spec: { workflow: wf, cron: "@daily", input },
      });
    }
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await s.listSchedules({ pageSize: 1000, pageToken });
      expect(toBinary(ListSchedulesResponseSchema, page).length).toBeLessThanOrEqual(80 * 1024);
      // A listing shows the next fire time only; GetSchedule shows five.
      for (const x of page.schedules)
        if (x.status === ScheduleStatus.ACTIVE) expect(x.nextFireTimes).toHaveLength(1);
      seen.push(...page.schedules.map((x) => x.id));
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken !== "");
    expect(pages).toBeGreaterThan(1);
    const mine = seen.filter((x) => x.startsWith(prefix));
    expect(mine).toEqual(Array.from({ length: 40 }, (_, i) => `${prefix}-${String(i).padStart(2, "0")}`));
    expect(new Set(seen).size).toBe(seen.length);
  });

  it("updates, pauses, resumes and deletes", async () => {
    const scheduleId = id();
    await s.createSchedule({ scheduleId, spec: { workflow: wf, cron: "@daily" } });
    const updated = await s.updateSchedule({
      scheduleId,
      spec: { workflow: wf, interval: { seconds: 7200n }, offset: { seconds: 60n } },
    });
    expect(updated.schedule?.spec?.cron).toBe("");
    expect(msOf(updated.schedule?.nextFireTimes[0]) % 7_200_000).toBe(60_000);
    const paused = await s.pauseSchedule({ scheduleId, note: "maintenance" });
    expect(paused.schedule?.status).toBe(ScheduleStatus.PAUSED);
    expect(paused.schedule?.pauseNote).toBe("maintenance");
    expect(paused.schedule?.nextFireTimes).toEqual([]);
    // Idempotent.
    expect((await s.pauseSchedule({ scheduleId })).schedule?.status).toBe(ScheduleStatus.PAUSED);
    // An update keeps it paused.
    expect(
      (await s.updateSchedule({ scheduleId, spec: { workflow: wf, cron: "@hourly" } })).schedule?.status,
    ).toBe(ScheduleStatus.PAUSED);
    const resumed = await s.resumeSchedule({ scheduleId });
    expect(resumed.schedule?.status).toBe(ScheduleStatus.ACTIVE);
    expect(resumed.schedule?.pauseNote).toBe("");
    expect(resumed.schedule?.nextFireTimes).toHaveLength(5);
    expect((await s.resumeSchedule({ scheduleId })).schedule?.status).toBe(ScheduleStatus.ACTIVE);
    await s.deleteSchedule({ scheduleId });
    expect((await rpcError(s.getSchedule({ scheduleId }))).code).toBe(Code.NotFound);
    expect((await rpcError(s.deleteSchedule({ scheduleId }))).code).toBe(Code.NotFound);
  });

  it("triggers a run now, idempotently with a key, and records it as the last run", async () => {
    const scheduleId = id();
    await s.createSchedule({
      scheduleId,
      spec: { workflow: wf, cron: "@yearly", input: value({ n: 7 }) },
      paused: true,
    });
    const before = Date.now();
    const first = await s.triggerSchedule({ scheduleId, idempotencyKey: "k1" });
    expect(first.created).toBe(true);
    expect(first.run?.scheduleId).toBe(scheduleId);
    expect(msOf(first.run?.fireTime)).toBeGreaterThanOrEqual(before - 5);
    expect(json(first.run?.input)).toEqual({ n: 7 });
    const again = await s.triggerSchedule({ scheduleId, idempotencyKey: "k1" });
    expect(again.created).toBe(false);
    expect(again.run?.id).toBe(first.run?.id);
    const other = await s.triggerSchedule({ scheduleId });
    expect(other.run?.id).not.toBe(first.run?.id);
    const { schedule } = await s.getSchedule({ scheduleId });
    expect(schedule?.lastRunId).toBe(other.run?.id);
    expect(schedule?.lastRunStatus).toBe(RunStatus.RUNNING);
    // Trigger-now runs are the schedule's, not the clock's.
    expect(schedule?.firedCount).toBe(0n);
    const listed = await runsOfSchedule(c, scheduleId);
    expect(listed.map((r) => r.id).sort()).toEqual([first.run?.id, other.run?.id].sort());
    expect((await c.workflows.getRun({ runId: first.run?.id ?? "" })).run?.scheduleId).toBe(scheduleId);
    expect(
      (await rpcError(s.triggerSchedule({ scheduleId, idempotencyKey: "k".repeat(129) }))).rawMessage,
    ).toBe("idempotency_key: must be at most 128 characters");
  });

  it("backfills 100 past fire times once: called twice, 100 runs", async () => {
    const scheduleId = id();
    await s.createSchedule({ scheduleId, spec: { workflow: wf, interval: { seconds: 60n } } });
    const end = Math.floor(Date.now() / 60_000) * 60_000 - 3_600_000;
    const start = end - 99 * 60_000;
    const first = await s.backfillSchedule({ scheduleId, startTime: at(start), endTime: at(end) });
    expect(first.startedCount).toBe(100);
    expect(first.runIds).toHaveLength(100);
    expect(new Set(first.runIds).size).toBe(100);
    const second = await s.backfillSchedule({ scheduleId, startTime: at(start), endTime: at(end) });
    expect(second.startedCount).toBe(0);
    expect(second.runIds).toEqual(first.runIds);
    const runs = await runsOfSchedule(c, scheduleId);
    expect(runs).toHaveLength(100);
    const fires = runs.map((r) => msOf(r.fireTime)).sort((a, b) => a - b);
    expect(fires).toEqual(Array.from({ length: 100 }, (_, i) => start + i * 60_000));
    const keys = new Set(runs.map((r) => r.idempotencyKey));
    expect(keys.size).toBe(100);
    expect(keys.has(`sched:${scheduleId}:${new Date(start).toISOString()}`)).toBe(true);
    // Backfills are not the clock's fires.
    expect((await s.getSchedule({ scheduleId })).schedule?.firedCount).toBe(0n);

    const problems: [Record<string, unknown>, string][] = [
      [{ endTime: at(end) }, "start_time: is required"],
      [{ startTime: at(start) }, "end_time: is required"],
      [
        { startTime: at(start), endTime: at(Date.now() + 60_000) },
        "end_time: is in the future: backfill a past range",
      ],
      [{ startTime: at(end), endTime: at(start) }, "end_time: must not be before start_time"],
      [{ startTime: at(-60_000), endTime: at(start) }, "start_time: is not a valid time after 1970"],
      [
        { startTime: at(end - 1000 * 60_000), endTime: at(end) },
        "end_time: the range holds more than 1000 fire times; backfill it in several calls",
      ],
    ];
    for (const [range, message] of problems) {
      const err = await rpcError(s.backfillSchedule({ scheduleId, ...range }));
      expect([Code[err.code], err.rawMessage]).toEqual(["InvalidArgument", message]);
    }
  });

  it("stops firing while paused, and resumes without replaying the paused period", async () => {
    const scheduleId = id();
    await s.createSchedule({
      scheduleId,
      spec: { workflow: wf, cron: "* * * * * *", overlapPolicy: OverlapPolicy.ALLOW_ALL },
    });
    await waitFor(async () => (await runsOfSchedule(c, scheduleId)).length >= 2, {
      message: "the schedule to fire twice",
      timeoutMs: 15_000,
    });
    await s.pauseSchedule({ scheduleId });
    // A fire under way when the pause came may still land: read the count once the pause has settled.
    const pausedAt = Date.now();
    await waitFor(() => Date.now() > pausedAt + 1500, { message: "a fire step under way to end" });
    const atPause = (await runsOfSchedule(c, scheduleId)).length;
    const firedAtPause = (await s.getSchedule({ scheduleId })).schedule?.firedCount;
    // Three fire times pass while it is paused.
    await waitFor(() => Date.now() > pausedAt + 4500, { message: "three fire times to pass" });
    expect((await runsOfSchedule(c, scheduleId)).length).toBe(atPause);
    const resumedAt = Date.now();
    await s.resumeSchedule({ scheduleId });
    await waitFor(async () => (await runsOfSchedule(c, scheduleId)).length >= atPause + 2, {
      message: "the schedule to fire again after resuming",
      timeoutMs: 15_000,
    });
    await s.pauseSchedule({ scheduleId });
    const runs = await runsOfSchedule(c, scheduleId);
    const after = runs.filter((r) => msOf(r.fireTime) > pausedAt + 1500);
    // Every run after the pause is for a fire time after the resume: none of the paused seconds.
    expect(after.length).toBeGreaterThanOrEqual(2);
    for (const r of after) expect(msOf(r.fireTime)).toBeGreaterThan(resumedAt - 1000);
    const { schedule } = await s.getSchedule({ scheduleId });
    expect(schedule?.missedCount).toBe(0n);
    expect(Number(schedule?.firedCount)).toBeGreaterThan(Number(firedAtPause));
  });

  it("filters ListRuns by schedule and workflow together", async () => {
    const scheduleId = id();
    await s.createSchedule({ scheduleId, spec: { workflow: wf, cron: "@yearly" } });
    await s.triggerSchedule({ scheduleId });
    expect((await c.workflows.listRuns({ scheduleId, workflow: wf })).runs).toHaveLength(1);
    expect((await c.workflows.listRuns({ scheduleId, workflow: "other" })).runs).toHaveLength(0);
    expect((await c.workflows.listRuns({ scheduleId: "never-made" })).runs).toHaveLength(0);
  });
});

describe("ScheduleService scopes", () => {
  let secured: WeftdProcess;
  const operator = `op-${randomUUID()}`;
  const reader = `reader-${randomUUID()}`;
  const client = `client-${randomUUID()}`;
  const bearer =
    (token: string): Interceptor =>
    (next) =>
    (req) => {
      req.header.set("authorization", `Bearer ${token}`);
      return next(req);
    };

  beforeAll(async () => {
    const dir = mkdtempSync(join(tmpdir(), "weft-sched-auth-"));
    const entry = (name: string, token: string, scopes: string[]) =>
      `    - name: ${name}\n      sha256: ${hashToken(token)}\n      scopes: [${scopes.join(", ")}]\n`;
    writeFileSync(
      join(dir, "weft.yaml"),
      "auth:\n  tokens:\n" +
        entry("operator", operator, ["schedules:write", "workflows:write", "runs:read"]) +
        entry("reader", reader, ["runs:read"]) +
        entry("client", client, ["workflows:write", "runs:trigger", "runs:read", "runs:cancel"]),
    );
    secured = await spawnWeftd({
      redisUrl: redis.url,
      args: ["--config", join(dir, "weft.yaml")],
      auth: true,
    });
    await weftClients(secured.address, [bearer(operator)]).workflows.submitWorkflow({
      definition: { name: wf, tasks: [task("a")] },
    });
  });

  afterAll(async () => {
    await secured?.stop();
  });

  it("lets only schedules:write create and drive schedules, and runs:read read them", async () => {
    const scheduleId = id();
    const spec = { workflow: wf, cron: "@daily" };
    for (const token of [client, reader]) {
      const err = await rpcError(
        scheduleClient(secured.address, [bearer(token)]).createSchedule({ scheduleId, spec }),
      );
      expect(Code[err.code]).toBe("PermissionDenied");
      expect(err.rawMessage).toContain(
        'lacks the scope "schedules:write" needed by weft.v1.ScheduleService/CreateSchedule',
      );
    }
    const op = scheduleClient(secured.address, [bearer(operator)]);
    await op.createSchedule({ scheduleId, spec });
    const read = scheduleClient(secured.address, [bearer(reader)]);
    expect((await read.getSchedule({ scheduleId })).schedule?.id).toBe(scheduleId);
    expect((await read.listSchedules({})).schedules.map((x) => x.id)).toContain(scheduleId);
    for (const call of [
      () => read.pauseSchedule({ scheduleId }),
      () => read.triggerSchedule({ scheduleId }),
      () => read.deleteSchedule({ scheduleId }),
      () => read.backfillSchedule({ scheduleId }),
    ]) {
      expect(Code[(await rpcError(call())).code]).toBe("PermissionDenied");
    }
    await op.pauseSchedule({ scheduleId });
    await op.deleteSchedule({ scheduleId });
  });
});
