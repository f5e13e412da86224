import { randomUUID } from "node:crypto";
import {
  createWeftClient,
  InvalidArgumentError,
  ScheduleNotFoundError,
  ScheduleStatus,
  type WeftClient,
  WorkflowNotFoundError,
} from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { cells, runWeft } from "./cli-process.js";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess } from "./support/index.js";
import { msOf } from "./support/schedules.js";
import { task, weftClients } from "./support/weft.js";

let redis: RedisServer;
let weftd: WeftdProcess;
let sdk: WeftClient;
let env: NodeJS.ProcessEnv;
const wf = `sched-clients-${randomUUID().slice(0, 8)}`;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  env = { WEFT_ADDRESS: weftd.address };
  sdk = createWeftClient({ address: weftd.address });
  await weftClients(weftd.address).workflows.submitWorkflow({ definition: { name: wf, tasks: [task("a")] } });
});

afterAll(async () => {
  sdk?.close();
  await weftd?.stop();
  await redis?.close();
});

describe("SDK schedule methods", () => {
  it("creates, reads, lists, triggers, backfills, pauses, resumes and deletes", async () => {
    const id = `sdk-${randomUUID().slice(0, 8)}`;
    const created = await sdk.createSchedule(
      {
        workflow: wf,
        cron: "0 9 * * MON",
        timeZone: "Europe/Paris",
        input: { report: "weekly" },
        overlap: "buffer_one",
      },
      { id },
    );
    expect(created.status).toBe(ScheduleStatus.ACTIVE);
    expect(created.nextFireTimes).toHaveLength(5);
    expect((await sdk.getSchedule(id)).spec?.timeZone).toBe("Europe/Paris");
    const ids: string[] = [];
    for await (const s of sdk.listSchedules({ pageSize: 1 })) ids.push(s.id);
    expect(ids).toContain(id);
    const { run, created: fresh } = await sdk.triggerSchedule(id, { idempotencyKey: "once" });
    expect(fresh).toBe(true);
    expect(run.scheduleId).toBe(id);
    const listed: string[] = [];
    for await (const r of sdk.listRuns({ scheduleId: id })) listed.push(r.id);
    expect(listed).toEqual([run.id]);
    const end = new Date(Math.floor(Date.now() / 3_600_000) * 3_600_000 - 86_400_000 * 14);
    const back = await sdk.backfillSchedule(id, new Date(end.getTime() - 86_400_000 * 21), end);
    expect(back.runIds).toHaveLength(3);
    expect(back.started).toBe(3);
    expect((await sdk.pauseSchedule(id, "holidays")).pauseNote).toBe("holidays");
    expect((await sdk.resumeSchedule(id)).status).toBe(ScheduleStatus.ACTIVE);
    const every = await sdk.updateSchedule(id, { workflow: wf, every: "15m", offset: "5m" });
    expect(msOf(every.nextFireTimes[0]) % 900_000).toBe(300_000);
    await sdk.deleteSchedule(id);
    const err = await sdk.getSchedule(id).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(ScheduleNotFoundError);
    expect((err as ScheduleNotFoundError).scheduleId).toBe(id);
  });

  it("maps bad input to typed errors naming the field", async () => {
    const bad = await sdk.createSchedule({ workflow: wf, cron: "0 25 * * *" }).catch((e: unknown) => e);
    expect(bad).toBeInstanceOf(InvalidArgumentError);
    expect((bad as InvalidArgumentError).violations).toEqual([
      { field: "spec.cron", description: "is not a valid cron expression: Invalid value for hour: 25" },
    ]);
    const missing = await sdk.createSchedule({ workflow: "nope", cron: "@daily" }).catch((e: unknown) => e);
    expect(missing).toBeInstanceOf(WorkflowNotFoundError);
    expect((missing as WorkflowNotFoundError).workflow).toBe("nope");
    await expect(sdk.createSchedule({ workflow: wf, every: "often" })).rejects.toThrow(
      '"often" is not a duration',
    );
  });
});

describe("weft schedules", () => {
  it("creates, lists, shows, triggers, backfills, pauses, resumes and removes a schedule", async () => {
    const id = `cli-${randomUUID().slice(0, 8)}`;
    const create = await runWeft(
      [
        "schedules",
        "create",
        wf,
        "--id",
        id,
        "--cron",
        "30 2 * * *",
        "--tz",
        "Europe/Paris",
        "--input",
        '{"n":1}',
      ],
      env,
    );
    expect(create.stderr).toBe("");
    expect(create.stdout).toMatch(
      new RegExp(
        `^schedule ${id} created: ${wf}, 30 2 \\* \\* \\* \\(Europe/Paris\\), ACTIVE\\nnext fires: `,
      ),
    );
    expect(create.code).toBe(0);

    const ls = await runWeft(["schedules", "ls"], env);
    expect(ls.code).toBe(0);
    const row = cells(ls.stdout).find((r) => r[0] === id);
    expect(row?.slice(1, 4)).toEqual([wf, "30 2 * * * (Europe/Paris)", "ACTIVE"]);
    expect(row?.[6]).toBe("0/0/0");

    const get = await runWeft(["schedules", "get", id], env);
    expect(get.stdout).toContain("status: ACTIVE");
    expect(get.stdout).toContain("overlap: skip");
    expect(get.stdout).toContain('input: {"n":1}');

    const trig = await runWeft(["schedules", "trigger", id, "--idempotency-key", "k"], env);
    expect(trig.stdout).toMatch(/^run [0-9a-f-]{36} started\n$/);
    const again = await runWeft(["schedules", "trigger", id, "--idempotency-key", "k"], env);
    expect(again.stdout).toBe(trig.stdout.replace("started", "already exists"));
    const runs = await runWeft(["runs", "ls", "--schedule", id], env);
    expect(cells(runs.stdout).map((r) => r[0])).toEqual(["RUN", trig.stdout.split(" ")[1]]);

    const day = 86_400_000;
    const to = new Date(Math.floor(Date.now() / day) * day - 10 * day).toISOString();
    const from = new Date(Math.floor(Date.now() / day) * day - 13 * day).toISOString();
    const back = await runWeft(["schedules", "backfill", id, "--from", from, "--to", to], env);
    expect(back.stdout).toBe("3 fire times: 3 runs started, 0 already existed\n");
    const back2 = await runWeft(["schedules", "backfill", id, "--from", from, "--to", to], env);
    expect(back2.stdout).toBe("3 fire times: 0 runs started, 3 already existed\n");

    expect((await runWeft(["schedules", "pause", id, "--note", "freeze"], env)).stdout).toBe(
      `schedule ${id} paused\n`,
    );
    expect((await runWeft(["schedules", "get", id], env)).stdout).toContain("status: PAUSED (freeze)");
    expect((await runWeft(["schedules", "resume", id], env)).stdout).toMatch(
      new RegExp(`^schedule ${id} resumed; next fire `),
    );
    expect((await runWeft(["schedules", "rm", id], env)).stdout).toBe(`schedule ${id} deleted\n`);
    const gone = await runWeft(["schedules", "get", id], env);
    expect([gone.code, gone.stderr]).toEqual([3, `weft: schedule "${id}" not found\n`]);
  });

  it("refuses bad command lines with exit 2 and names the field of a bad spec", async () => {
    const both = await runWeft(["schedules", "create", wf, "--cron", "@daily", "--every", "1h"], env);
    expect([both.code, both.stderr]).toEqual([
      2,
      "weft: give --cron or --every (one of them); see weft schedules create --help\n",
    ]);
    const overlap = await runWeft(
      ["schedules", "create", wf, "--every", "1h", "--overlap", "sometimes"],
      env,
    );
    expect(overlap.code).toBe(2);
    expect(overlap.stderr).toContain("--overlap must be one of skip, buffer_one, allow_all, cancel_previous");
    const tz = await runWeft(["schedules", "create", wf, "--cron", "@daily", "--tz", "Nowhere/Land"], env);
    expect([tz.code, tz.stderr]).toEqual([
      2,
      'weft: spec.time_zone: "Nowhere/Land" is not an IANA time zone\n',
    ]);
    const noRange = await runWeft(["schedules", "backfill", "x"], env);
    expect(noRange.code).toBe(2);
    expect(noRange.stderr).toContain("--from and --to are required");
  });
});
