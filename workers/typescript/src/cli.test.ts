import { type ChildProcess, spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { toJson } from "@bufbuild/protobuf";
import { ValueSchema } from "@bufbuild/protobuf/wkt";
import { describe, expect, onTestFinished, test } from "vitest";
import { parseCliArgs } from "./cli-args.js";
import { toProtoValue } from "./json.js";
import { within } from "./testing/async.js";
import { FakeWorkerService } from "./testing/fake-worker-service.js";

const bin = fileURLToPath(new URL("./bin.ts", import.meta.url));
const fixture = fileURLToPath(new URL("./testing/fixture-handlers.ts", import.meta.url));

/** Collects a child's stdout as parsed JSON lines and resolves when one matches `msg`. */
function jsonLines(child: ChildProcess): {
  lines: Record<string, unknown>[];
  next: (msg: string) => Promise<void>;
} {
  const lines: Record<string, unknown>[] = [];
  let buffered = "";
  const waiters: { msg: string; resolve: () => void }[] = [];
  child.stdout?.setEncoding("utf8").on("data", (chunk: string) => {
    buffered += chunk;
    let newline = buffered.indexOf("\n");
    while (newline >= 0) {
      const line = JSON.parse(buffered.slice(0, newline)) as Record<string, unknown>;
      buffered = buffered.slice(newline + 1);
      lines.push(line);
      for (const waiter of waiters.filter((w) => w.msg === line.msg)) {
        waiter.resolve();
      }
      newline = buffered.indexOf("\n");
    }
  });
  const next = (msg: string): Promise<void> =>
    lines.some((line) => line.msg === msg)
      ? Promise.resolve()
      : new Promise((resolve) => waiters.push({ msg, resolve }));
  return { lines, next };
}

describe("bin.ts", () => {
  test("runs the handlers of a module, logs when polling starts, and exits 0 on SIGTERM", async () => {
    const fake = await FakeWorkerService.start();
    const queue = `test-${randomUUID()}`;
    const child = spawn(
      process.execPath,
      [
        "--import",
        "tsx/esm",
        bin,
        "--address",
        fake.address,
        "--queue",
        queue,
        "--handlers",
        fixture,
        "--concurrency",
        "2",
      ],
      { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, WEFT_LOG_LEVEL: "info" } },
    );
    // "close" rather than "exit": it fires once stdout is fully read.
    const exited = once(child, "close");
    onTestFinished(async () => {
      if (child.exitCode === null) {
        child.kill("SIGKILL");
      }
      await fake.stop();
    });
    const out = jsonLines(child);

    await within(out.next("worker polling"), "the worker's first log line", 10_000);
    expect(out.lines.filter((line) => line.msg === "worker polling")).toHaveLength(1);
    expect(out.lines.find((line) => line.msg === "worker polling")).toMatchObject({
      queue,
      handlers: ["double"],
      concurrency: 2,
    });
    await fake.waitFor("a poll", () => fake.activePolls === 1);
    expect(fake.polls[0]).toMatchObject({ queue, handlers: ["double"], maxTasks: 2 });

    fake.enqueue({ handler: "double", input: toProtoValue({ n: 21 }) });
    const completion = await fake.waitFor("CompleteTask", () => fake.completions[0]);
    expect(completion.output && toJson(ValueSchema, completion.output)).toEqual({ doubled: 42 });

    child.kill("SIGTERM");
    const [code] = await within(exited, "the worker process to exit");
    expect(code).toBe(0);
    expect(out.lines.map((line) => line.msg).slice(-3)).toEqual([
      "signal received; closing the worker",
      "worker closing",
      "worker closed",
    ]);
  }, 20_000);

  test("parses flags and environment", () => {
    const args = ["--address", "h:1", "--queue", "q", "--handlers", "./h.ts", "--concurrency", "8"];
    expect(parseCliArgs(args, { WEFT_TOKEN: "t" })).toEqual({
      address: "h:1",
      queue: "q",
      handlers: "./h.ts",
      concurrency: 8,
      token: "t",
    });
    expect(parseCliArgs(["--queue", "q", "--handlers", "h"], { WEFT_ADDRESS: "e:2" })).toMatchObject({
      address: "e:2",
    });
    expect(() => parseCliArgs(["--queue", "q"], {})).toThrow("--address is required");
    expect(() => parseCliArgs([...args, "--poll-wait-ms", "soon"], {})).toThrow(
      'pollWaitMs must be a number, got "soon"',
    );
    expect(parseCliArgs(["--help"], {})).toBe("help");
    expect(parseCliArgs([...args, "--no-stream"], {})).toMatchObject({ stream: false });
    expect(parseCliArgs(args, {})).not.toHaveProperty("stream");
  });
});
