/**
 * A worker on another host: the worker runs inside its own network namespace and reaches weftd
 * only through a veth pair, weftd listening on the host side's address. Cutting the link mid-task
 * makes the lease expire and the task move to a worker on the host.
 *
 * Addresses are 10.x inside namespaces made here, and nothing is sent anywhere else. Needs root
 * and iproute2 (.ci/run has both); skipped with the reason printed otherwise.
 */
import { execFileSync } from "node:child_process";
import { randomInt, randomUUID } from "node:crypto";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { freePort } from "@weft/daemon";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { type Runtime, type RuntimeWorker, spawnRuntimeWorker } from "./fixtures/runtimes.js";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess, waitFor } from "./support/index.js";
import { collectEvents, describeEvent, json, RunStatus, task, value, weftClients } from "./support/weft.js";

function ip(...args: string[]): string {
  return execFileSync("ip", args, { stdio: ["ignore", "pipe", "pipe"], encoding: "utf8" });
}

/** Why namespaces cannot be used here, or undefined when they can. */
function namespacesUnavailable(): string | undefined {
  if (process.platform !== "linux") return "network namespaces need Linux";
  if (process.getuid?.() !== 0) return "creating network namespaces needs root (.ci/run runs as root)";
  const probe = `weft-probe-${process.pid}`;
  try {
    ip("netns", "add", probe);
    ip("netns", "del", probe);
    return undefined;
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    return `cannot create a network namespace (${stderr || (err as Error).message})`;
  }
}

const skipReason = namespacesUnavailable();
// .ci/run runs as root on Linux: there, a machine without namespaces fails this file instead of skipping it.
if (skipReason !== undefined && process.env.CI === "true") {
  throw new Error(`test/netns.test.ts needs network namespaces in CI: ${skipReason}`);
}
if (skipReason !== undefined) {
  console.warn(`test/netns.test.ts: remote-worker tests skipped: ${skipReason}`);
}
const suffix = skipReason === undefined ? "" : ` [skipped: ${skipReason}]`;

/** A namespace joined to the host by a veth pair on a /30 of 10.211.0.0/16. */
interface Link {
  ns: string;
  hostIf: string;
  nsIf: string;
  hostAddress: string;
  nsAddress: string;
  cut(): void;
  restore(): void;
  remove(): void;
}

function createLink(): Link {
  const id = randomUUID().replaceAll("-", "").slice(0, 8);
  const ns = `weft-${id}`;
  const hostIf = `wh${id}`;
  const nsIf = `wn${id}`;
  const base = randomInt(0, 64) * 4;
  const subnet = `10.211.${randomInt(0, 256)}`;
  const hostAddress = `${subnet}.${base + 1}`;
  const nsAddress = `${subnet}.${base + 2}`;
  const remove = () => {
    for (const args of [
      ["link", "del", hostIf],
      ["netns", "del", ns],
    ]) {
      try {
        ip(...args);
      } catch {
        // Already gone: deleting the namespace removes both ends of the pair.
      }
    }
  };
  try {
    ip("netns", "add", ns);
    ip("link", "add", hostIf, "type", "veth", "peer", "name", nsIf);
    ip("link", "set", nsIf, "netns", ns);
    ip("addr", "add", `${hostAddress}/30`, "dev", hostIf);
    ip("link", "set", hostIf, "up");
    ip("netns", "exec", ns, "ip", "addr", "add", `${nsAddress}/30`, "dev", nsIf);
    ip("netns", "exec", ns, "ip", "link", "set", nsIf, "up");
    ip("netns", "exec", ns, "ip", "link", "set", "lo", "up");
  } catch (err) {
    remove();
    throw err;
  }
  return {
    ns,
    hostIf,
    nsIf,
    hostAddress,
    nsAddress,
    cut: () => ip("link", "set", hostIf, "down"),
    restore: () => ip("link", "set", hostIf, "up"),
    remove,
  };
}

interface JournalLine {
  event: string;
  runId: string;
  taskId: string;
  attempt: number;
  pid: number;
}

function journalOf(file: string): JournalLine[] {
  if (!existsSync(file)) return [];
  return readFileSync(file, "utf8")
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as JournalLine);
}

let redis: RedisServer;
let dir: string;
const links: Link[] = [];
const cleanups: (() => Promise<void>)[] = [];

beforeAll(async () => {
  if (skipReason !== undefined) return;
  redis = await startTestRedis();
  dir = mkdtempSync(join(tmpdir(), "weft-netns-"));
});

afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup().catch(() => {});
});

afterAll(async () => {
  for (const link of links.splice(0)) link.remove();
  await redis?.close();
});

describe("a worker on another host (its own network namespace)", () => {
  it.skipIf(skipReason !== undefined).each<Runtime>(["go", "python"])(
    `%s: completes tasks through the link, and a cut link moves its task to another worker${suffix}`,
    async (runtime) => {
      const link = createLink();
      links.push(link);
      cleanups.push(async () => link.remove());
      const port = await freePort();
      const address = `${link.hostAddress}:${port}`;
      const weftd: WeftdProcess = await spawnWeftd({
        redisUrl: redis.url,
        args: ["--addr", address, "--stalled-interval", "300ms"],
      });
      cleanups.push(async () => {
        await weftd.stop();
      });
      const c = weftClients(address);
      const id = randomUUID().slice(0, 8);
      const queue = `remote-${runtime}-${id}`;
      const journal = join(dir, `${queue}.jsonl`);
      const env = { WEFT_TEST_JOURNAL: journal };

      // The worker inside the namespace has no other way to the daemon than the veth pair.
      const interfaces = ip("netns", "exec", link.ns, "ip", "-br", "link")
        .trim()
        .split("\n")
        .map((line) => line.split(/\s+/)[0]?.split("@")[0]);
      expect(interfaces.sort()).toEqual(["lo", link.nsIf].sort());
      const remote: RuntimeWorker = await spawnRuntimeWorker(runtime, {
        address,
        queue,
        netns: link.ns,
        concurrency: 1,
        workerId: `remote-${runtime}-${id}`,
        env,
        startTimeoutMs: 120_000,
      });
      cleanups.push(async () => {
        link.restore();
        await remote.kill();
      });

      // It completes tasks.
      await c.workflows.submitWorkflow({
        definition: {
          name: `remote-chain-${id}`,
          tasks: [
            task("a", [], { queue, handler: "add" }),
            task("b", ["a"], { queue, handler: "add" }),
            task("c", ["b"], { queue, handler: "echo" }),
          ],
        },
      });
      const chainId =
        (await c.workflows.trigger({ workflow: `remote-chain-${id}`, input: value(5) })).run?.id ?? "";
      const chain = await waitFor(
        async () => {
          const run = (await c.workflows.getRun({ runId: chainId })).run;
          return run !== undefined && run.status !== RunStatus.RUNNING ? run : undefined;
        },
        { message: `run ${chainId} on the remote worker to finish\n${remote.output()}`, timeoutMs: 30_000 },
      );
      expect(RunStatus[chain.status]).toBe("SUCCEEDED");
      expect(json(chain.output)).toEqual({ c: { task: "c", input: null, parents: { b: 7 } } });
      expect(new Set(chain.tasks.map((t) => t.workerId))).toEqual(new Set([remote.workerId]));

      // Mid-task, the link goes down: the remote worker's heartbeats stop reaching weftd.
      await c.workflows.submitWorkflow({
        definition: {
          name: `remote-cut-${id}`,
          tasks: [task("s", [], { queue, handler: "stuckOnce", timeouts: { heartbeat: { seconds: 1n } } })],
        },
      });
      const runId = (await c.workflows.trigger({ workflow: `remote-cut-${id}` })).run?.id ?? "";
      const started = await waitFor(
        () => journalOf(journal).find((l) => l.runId === runId && l.attempt === 1),
        {
          message: `task s to start on the remote worker\n${remote.output()}`,
          timeoutMs: 30_000,
        },
      );
      expect(started.pid).toBe(remote.pid);
      link.cut();
      const local = await spawnRuntimeWorker("typescript", {
        address,
        queue,
        workerId: `local-${id}`,
        env,
      });
      cleanups.push(() => local.stop());
      const run = await waitFor(
        async () => {
          const r = (await c.workflows.getRun({ runId })).run;
          return r !== undefined && r.status !== RunStatus.RUNNING ? r : undefined;
        },
        { message: `run ${runId} to finish on the host's worker`, timeoutMs: 30_000 },
      );
      expect(RunStatus[run.status]).toBe("SUCCEEDED");
      const s = run.tasks[0];
      expect([s?.attempt, s?.workerId]).toEqual([2, `local-${id}`]);
      expect(json(s?.output)).toEqual({ task: "s", attempt: 2, input: null });
      const events = (await collectEvents(c, runId)).map(describeEvent);
      expect(events).toEqual([
        "RUN_STARTED",
        "TASK_QUEUED s#0",
        "TASK_STARTED s#1",
        "TASK_RETRYING s#1",
        "TASK_STARTED s#2",
        "TASK_COMPLETED s#2",
        "RUN_FINISHED SUCCEEDED",
      ]);
      expect(journalOf(journal).find((l) => l.runId === runId && l.attempt === 2)?.pid).toBe(local.pid);
    },
  );
});
