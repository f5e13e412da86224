import { Writable } from "node:stream";
import pino from "pino";
import { describe, expect, it } from "vitest";
import { errorKind, LogThrottle, logThrottle, type OutageSink } from "./log-throttle.js";

/** A pino logger that keeps its lines (without time, pid and hostname). */
function capture() {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _encoding, done) {
      const {
        time: _t,
        pid: _p,
        hostname: _h,
        ...line
      } = JSON.parse(chunk.toString()) as Record<string, unknown>;
      lines.push(line);
      done();
    },
  });
  return { logger: pino({ level: "debug" }, stream), lines };
}

/** Pino writes asynchronously through the stream: wait for the lines to land. */
const settle = () => new Promise((resolve) => setImmediate(resolve));

function errno(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

describe("LogThrottle", () => {
  it("logs the first of a kind in full, then its count when it stops", async () => {
    const { logger, lines } = capture();
    let now = 1000;
    const throttle = new LogThrottle(logger, { summaryEveryMs: 60_000, quietMs: 5000, now: () => now });
    const err = errno("connect ECONNREFUSED 127.0.0.1:6379", "ECONNREFUSED");
    for (let i = 0; i < 160; i++) {
      throttle.warn({ err, queue: "emails" }, "BullMQ worker error");
      now += 100;
    }
    throttle.sweep();
    await settle();
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 40, msg: "BullMQ worker error", queue: "emails" });
    expect(lines[0]?.err).toMatchObject({ code: "ECONNREFUSED" });

    now += 5000;
    throttle.sweep();
    await settle();
    expect(lines[1]).toEqual({
      level: 40,
      msg: "BullMQ worker error",
      repeated: 159,
      sinceMs: 21_000,
      error: "ECONNREFUSED",
    });
    // Over: the next one is logged in full again.
    throttle.warn({ err }, "BullMQ worker error");
    await settle();
    expect(lines).toHaveLength(3);
    expect(lines[2]?.err).toBeDefined();
  });

  it("logs the count every summaryEveryMs while it keeps repeating", async () => {
    const { logger, lines } = capture();
    let now = 0;
    const throttle = new LogThrottle(logger, { summaryEveryMs: 10_000, quietMs: 5000, now: () => now });
    for (let i = 0; i < 250; i++) {
      throttle.error({ err: new Error("boom") }, "stalled checker failed");
      now += 100;
    }
    await settle();
    expect(lines.map((l) => [l.msg, l.repeated, l.sinceMs])).toEqual([
      ["stalled checker failed", undefined, undefined],
      ["stalled checker failed", 100, 10_000],
      ["stalled checker failed", 100, 10_000],
    ]);
    expect(lines.every((l) => l.level === 50)).toBe(true);
    throttle.flush();
    await settle();
    expect(lines[3]).toMatchObject({ repeated: 49, sinceMs: 5000, error: "Error: boom" });
  });

  it("keeps kinds apart: message, source and error kind", async () => {
    const { logger, lines } = capture();
    const throttle = new LogThrottle(logger);
    const refused = errno("refused", "ECONNREFUSED");
    throttle.warn({ err: refused }, "fetching a job failed");
    throttle.warn({ err: refused }, "fetching a job failed");
    throttle.warn({ err: errno("reset", "ECONNRESET") }, "fetching a job failed");
    throttle.warn({ err: refused }, "fetching a job failed", "queue b");
    throttle.warn({ err: refused }, "could not requeue job");
    throttle.warn({}, "could not requeue job");
    await settle();
    expect(lines).toHaveLength(5);
    throttle.flush();
    await settle();
    expect(lines.slice(5)).toEqual([
      {
        level: 40,
        msg: "fetching a job failed",
        repeated: 1,
        sinceMs: expect.any(Number),
        error: "ECONNREFUSED",
      },
    ]);
  });

  it("hands errors to the outage sink first", async () => {
    const { logger, lines } = capture();
    const throttle = new LogThrottle(logger);
    const absorbed: string[] = [];
    const sink: OutageSink = {
      absorb: (err, msg) => {
        if ((err as NodeJS.ErrnoException).code !== "ECONNREFUSED") return false;
        absorbed.push(msg);
        return true;
      },
    };
    throttle.setOutageSink(sink);
    throttle.warn({ err: errno("refused", "ECONNREFUSED") }, "timer worker error");
    throttle.warn({ err: new Error("Missing lock for job 1") }, "could not requeue job");
    throttle.warn({ ms: 3000 }, "event loop blocked");
    await settle();
    expect(absorbed).toEqual(["timer worker error"]);
    expect(lines.map((l) => l.msg)).toEqual(["could not requeue job", "event loop blocked"]);
    throttle.setOutageSink(undefined);
    throttle.warn({ err: errno("refused", "ECONNREFUSED") }, "timer worker error");
    await settle();
    expect(lines.map((l) => l.msg)).toContain("timer worker error");
  });

  it("is one per logger", () => {
    const { logger } = capture();
    expect(logThrottle(logger)).toBe(logThrottle(logger));
    expect(logThrottle(logger)).not.toBe(logThrottle(logger.child({ component: "x" })));
  });
});

describe("errorKind", () => {
  it("is the code, or the name and message without ids and numbers", () => {
    expect(errorKind(errno("connect ECONNREFUSED 127.0.0.1:6379", "ECONNREFUSED"))).toBe("ECONNREFUSED");
    const a = new Error(
      "Missing lock for job 5a01358c-9c5b-4622-a587-8734f22ad2a1.t24. moveJobFromActiveToWait",
    );
    const b = new Error(
      "Missing lock for job 7c27a21e-0c7b-47db-9be4-a21c7b596442.t9. moveJobFromActiveToWait",
    );
    expect(errorKind(a)).toBe("Error: Missing lock for job <id>.t#. moveJobFromActiveToWait");
    expect(errorKind(b)).toBe(errorKind(a));
    expect(errorKind(undefined)).toBe("");
    expect(errorKind("text")).toBe("string");
  });
});
