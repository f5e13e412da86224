import { describe, expect, it } from "vitest";
import { type ClockSpec, isTimeZone, jitterOf, ScheduleClock } from "./clock.js";
import { planFires } from "./fire-plan.js";

const iso = (ms: number | undefined) => (ms === undefined ? undefined : new Date(ms).toISOString());
const at = (text: string) => Date.parse(text);

function clock(spec: Partial<ClockSpec>): ScheduleClock {
  return new ScheduleClock({
    cron: "",
    timeZone: "UTC",
    intervalMs: 0,
    offsetMs: 0,
    startMs: 0,
    endMs: 0,
    ...spec,
  });
}

/** The fire times after `from` up to `until`, as ISO strings. */
function fires(c: ScheduleClock, from: string, until: string): string[] {
  return c.between(at(from), at(until), 1000).map((t) => iso(t) as string);
}

describe("cron clock across daylight-saving changes (Europe/Paris)", () => {
  // 2025-03-30: 02:00 CET becomes 03:00 CEST (02:00-02:59 do not exist).
  // 2025-10-26: 03:00 CEST becomes 02:00 CET (02:00-02:59 occur twice).
  it("fires a 02:30 daily schedule once on the spring-forward day, at 03:00 local", () => {
    const c = clock({ cron: "30 2 * * *", timeZone: "Europe/Paris" });
    expect(fires(c, "2025-03-28T12:00:00Z", "2025-04-01T12:00:00Z")).toEqual([
      "2025-03-29T01:30:00.000Z", // 02:30 CET
      "2025-03-30T01:00:00.000Z", // 03:00 CEST, the first valid time after the gap
      "2025-03-31T00:30:00.000Z", // 02:30 CEST
      "2025-04-01T00:30:00.000Z",
    ]);
  });

  it("fires a 02:30 daily schedule once on the fall-back day, at the first 02:30", () => {
    const c = clock({ cron: "30 2 * * *", timeZone: "Europe/Paris" });
    expect(fires(c, "2025-10-24T12:00:00Z", "2025-10-27T12:00:00Z")).toEqual([
      "2025-10-25T00:30:00.000Z", // 02:30 CEST
      "2025-10-26T00:30:00.000Z", // 02:30 CEST, not again at 02:30 CET (01:30Z)
      "2025-10-27T01:30:00.000Z", // 02:30 CET
    ]);
  });

  it("keeps an every-30-minutes schedule every 30 minutes of real time through both changes", () => {
    const c = clock({ cron: "*/30 * * * *", timeZone: "Europe/Paris" });
    const spring = fires(c, "2025-03-30T00:00:00Z", "2025-03-30T02:00:00Z");
    expect(spring).toEqual([
      "2025-03-30T00:30:00.000Z", // 01:30 CET
      "2025-03-30T01:00:00.000Z", // 03:00 CEST
      "2025-03-30T01:30:00.000Z",
      "2025-03-30T02:00:00.000Z",
    ]);
    const fall = fires(c, "2025-10-25T23:45:00Z", "2025-10-26T02:00:00Z");
    // 02:00 and 02:30 local fire twice: once in CEST, once in CET.
    expect(fall).toEqual([
      "2025-10-26T00:00:00.000Z", // 02:00 CEST
      "2025-10-26T00:30:00.000Z", // 02:30 CEST
      "2025-10-26T01:00:00.000Z", // 02:00 CET
      "2025-10-26T01:30:00.000Z", // 02:30 CET
      "2025-10-26T02:00:00.000Z", // 03:00 CET
    ]);
  });

  it("reads the expression in its zone: 09:00 Monday in New York is 14:00 UTC in winter, 13:00 in summer", () => {
    const c = clock({ cron: "0 9 * * MON", timeZone: "America/New_York" });
    expect(fires(c, "2025-03-01T00:00:00Z", "2025-03-18T00:00:00Z")).toEqual([
      "2025-03-03T14:00:00.000Z",
      "2025-03-10T13:00:00.000Z", // the day after the US spring-forward (March 9)
      "2025-03-17T13:00:00.000Z",
    ]);
  });

  it("finds the latest fire times backwards as forwards, across a change", () => {
    for (const cron of ["30 2 * * *", "*/30 * * * *", "15 */2 * * *"]) {
      const c = clock({ cron, timeZone: "Europe/Paris" });
      const forward = c.between(at("2025-10-24T00:00:00Z"), at("2025-10-27T00:00:00Z"), 1000);
      const backward = c.latest(7, at("2025-10-24T00:00:00Z"), at("2025-10-27T00:00:00Z"));
      expect(backward.map(iso), cron).toEqual(forward.slice(-7).map(iso));
    }
  });
});

describe("cron clock", () => {
  it("takes 6 fields with seconds first, and nicknames", () => {
    expect(fires(clock({ cron: "*/20 * * * * *" }), "2025-01-01T00:00:00Z", "2025-01-01T00:01:00Z")).toEqual([
      "2025-01-01T00:00:20.000Z",
      "2025-01-01T00:00:40.000Z",
      "2025-01-01T00:01:00.000Z",
    ]);
    expect(iso(clock({ cron: "@daily" }).next(at("2025-01-01T10:00:00Z")))).toBe("2025-01-02T00:00:00.000Z");
  });

  it("refuses 7 fields, bad values and @reboot", () => {
    expect(() => clock({ cron: "* * * * * * *" })).toThrow(/5 or 6 parts/);
    expect(() => clock({ cron: "61 * * * *" })).toThrow(/minute: 61/);
    expect(() => clock({ cron: "@reboot" })).toThrow(/@reboot/);
  });

  it("keeps to start and end times (both inclusive)", () => {
    const c = clock({
      cron: "0 * * * *",
      startMs: at("2025-01-01T03:00:00Z"),
      endMs: at("2025-01-01T05:00:00Z"),
    });
    expect(fires(c, "2025-01-01T00:00:00Z", "2025-01-02T00:00:00Z")).toEqual([
      "2025-01-01T03:00:00.000Z",
      "2025-01-01T04:00:00.000Z",
      "2025-01-01T05:00:00.000Z",
    ]);
    expect(c.next(at("2025-01-01T05:00:00Z"))).toBeUndefined();
  });

  it("knows IANA time zones only", () => {
    expect(isTimeZone("Europe/Paris")).toBe(true);
    expect(isTimeZone("UTC")).toBe(true);
    expect(isTimeZone("Mars/Olympus_Mons")).toBe(false);
    expect(isTimeZone("+01:00")).toBe(false);
    expect(isTimeZone("")).toBe(false);
  });
});

describe("interval clock", () => {
  it("fires at multiples of the interval since the epoch, plus the offset", () => {
    const c = clock({ intervalMs: 15 * 60_000, offsetMs: 5 * 60_000 });
    expect(fires(c, "2025-01-01T00:00:00Z", "2025-01-01T00:40:00Z")).toEqual([
      "2025-01-01T00:05:00.000Z",
      "2025-01-01T00:20:00.000Z",
      "2025-01-01T00:35:00.000Z",
    ]);
    expect(c.latest(2, 0, at("2025-01-01T00:40:00Z")).map(iso)).toEqual([
      "2025-01-01T00:20:00.000Z",
      "2025-01-01T00:35:00.000Z",
    ]);
    expect(c.count(at("2025-01-01T00:05:00Z"), at("2025-01-01T01:05:00Z"), 10)).toEqual({ count: 4 });
  });
});

describe("jitter", () => {
  it("is fixed per schedule and fire time, within [0, jitter)", () => {
    const values = Array.from({ length: 200 }, (_, i) => jitterOf("s", i * 1000, 10_000));
    expect(values.every((v) => v >= 0 && v < 10_000)).toBe(true);
    expect(new Set(values).size).toBeGreaterThan(150);
    expect(jitterOf("s", 5000, 10_000)).toBe(jitterOf("s", 5000, 10_000));
    expect(jitterOf("s", 5000, 0)).toBe(0);
  });
});

describe("planFires", () => {
  const every10s = clock({ intervalMs: 10_000 });
  const base = { clock: every10s, catchUpWindowMs: 60_000, maxCatchUp: 3 };

  it("handles the one fire time due and moves to the next", () => {
    expect(planFires({ ...base, nextFire: 100_000, now: 100_050 })).toEqual({
      missed: 0,
      fire: 100_000,
      next: 110_000,
    });
  });

  it("after an outage, starts the latest within the window (bounded) and counts the others missed", () => {
    // Due since 0; now 200 s: 21 fire times (0..200 s); the window holds 140..200 s; 3 are kept.
    const plan = planFires({ ...base, nextFire: 0, now: 200_000 });
    expect(plan).toEqual({ missed: 18, fire: 180_000, next: 190_000 });
    // The next steps start the other two, then wait for the next fire time.
    expect(planFires({ ...base, nextFire: 190_000, now: 200_010 })).toEqual({
      missed: 0,
      fire: 190_000,
      next: 200_000,
    });
    expect(planFires({ ...base, nextFire: 200_000, now: 200_020 })).toEqual({
      missed: 0,
      fire: 200_000,
      next: 210_000,
    });
  });

  it("counts a lone fire time older than the window as missed", () => {
    const hourly = clock({ cron: "0 * * * *" });
    expect(
      planFires({
        ...base,
        clock: hourly,
        nextFire: at("2025-01-01T00:00:00Z"),
        now: at("2025-01-01T00:30:00Z"),
      }),
    ).toEqual({ missed: 1, next: at("2025-01-01T01:00:00Z") });
  });

  it("counts a long outage of a cron clock in chunks, a step each", () => {
    const everySecond = clock({ cron: "* * * * * *" });
    const now = at("2025-01-01T01:00:00Z");
    const first = planFires({ ...base, clock: everySecond, nextFire: at("2025-01-01T00:00:00Z"), now });
    expect(first).toEqual({ missed: 500, next: at("2025-01-01T00:08:20Z") });
    let nextFire = first.next as number;
    let missed = first.missed;
    let fired: number | undefined;
    for (let step = 0; step < 20 && fired === undefined; step++) {
      const plan = planFires({ ...base, clock: everySecond, nextFire, now });
      missed += plan.missed;
      fired = plan.fire;
      nextFire = plan.next as number;
    }
    // 3,601 fire times from 00:00:00 to 01:00:00; the last 3 are kept.
    expect(missed).toBe(3598);
    expect(iso(fired)).toBe("2025-01-01T00:59:58.000Z");
  });
});
