/**
 * `pnpm bench`: starts its own redis-server and weftd processes, runs the scenarios of issue 4 and
 * writes bench/RESULTS.md and bench/results.json. See `pnpm bench --help`.
 */
import { readFileSync } from "node:fs";
import { type RedisServer, startRedisServer } from "@weft/daemon";
import { Redis } from "ioredis";
import { MachineLoadMeter, redisPid, waitForQuiet } from "./cpu.js";
import { machineInfo } from "./machine.js";
import { FULL_SIZES, parseOptions, QUICK_SIZES, USAGE } from "./options.js";
import { BENCH_DIR } from "./paths.js";
import { runProfile } from "./profile.js";
import { runPeerProfile } from "./profile-peer.js";
import { type BenchRun, consoleSummary, type ScenarioOutcome, writeReports } from "./report.js";
import type { BenchContext, Scenario, Sizes } from "./scenario.js";
import { SCENARIOS } from "./scenarios/index.js";
import { buildWeftd, startWeftd, type Weftd } from "./weftd.js";

/**
 * Flags every bench weftd gets: room for the largest workflows of scenarios 1, 3 and 5, and no
 * authentication (loopback only; the figures leave out the bearer-token check).
 */
const WEFTD_ARGS = ["--max-tasks-per-workflow", "100000", "--max-request-bytes", "256MiB", "--insecure"];

// The in-process worker of scenario 2 logs at WEFT_LOG_LEVEL: keep the bench's output for the bench.
process.env.WEFT_LOG_LEVEL ??= "warn";

// Ctrl-C or a timeout: exit through the "exit" handlers, which kill every weftd and worker process.
for (const [signal, code] of [
  ["SIGINT", 130],
  ["SIGTERM", 143],
] as const) {
  process.on(signal, () => {
    process.stderr.write(`bench: ${signal}, stopping\n`);
    process.exit(code);
  });
}

function log(message: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${message}\n`);
}

async function runScenario(
  scenario: Scenario,
  sizes: Sizes,
  quick: boolean,
  redisServer: RedisServer,
  redis: Redis,
  shared: Map<string, number>,
  waitQuietS: number,
  flags: BenchContext["flags"],
): Promise<ScenarioOutcome> {
  log(`── ${scenario.title}`);
  let waited: { waitedS: number; busy: number } | undefined;
  if (waitQuietS > 0) {
    waited = await waitForQuiet(waitQuietS);
    log(
      `  waited ${waited.waitedS.toFixed(0)} s for a quiet machine (last second: ${waited.busy.toFixed(0)} % busy)`,
    );
  }
  await redis.flushall();
  const cleanups: (() => Promise<void> | void)[] = [];
  const started = Date.now();
  const meter = new MachineLoadMeter({ redis: await redisPid(redis) }).begin();
  const ctx: BenchContext = {
    sizes,
    quick,
    redisUrl: redisServer.url,
    redis,
    async startWeftd(extraArgs = [], redisUrl = redisServer.url): Promise<Weftd> {
      const weftd = await startWeftd({
        redisUrl,
        prefix: "bench",
        args: [...WEFTD_ARGS, ...extraArgs],
        nodeFlags: flags.weftdNodeFlags,
      });
      cleanups.push(() => weftd.stop());
      return weftd;
    },
    defer(fn) {
      cleanups.push(fn);
    },
    log: (m) => log(`  ${m}`),
    shared,
    flags,
  };
  let outcome: ScenarioOutcome;
  try {
    const result = await scenario.run(ctx);
    outcome = { id: scenario.id, title: scenario.title, ...result, durationMs: Date.now() - started };
  } catch (err) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err);
    log(`  FAILED: ${message}`);
    outcome = {
      id: scenario.id,
      title: scenario.title,
      setup: [],
      figures: [],
      tables: [],
      notes: [],
      durationMs: Date.now() - started,
      error: message,
    };
  } finally {
    for (const cleanup of cleanups.reverse()) {
      try {
        await cleanup();
      } catch (err) {
        log(`  cleanup failed: ${String(err)}`);
      }
    }
  }
  outcome.load = { ...meter.end(), ...(waited === undefined ? {} : { waitedS: waited.waitedS }) };
  log(
    `   done in ${((Date.now() - started) / 1000).toFixed(1)} s; machine ${outcome.load.busyPercent.toFixed(0)} % busy, ` +
      `${outcome.load.othersPercent.toFixed(0)} % by processes outside the bench`,
  );
  return outcome;
}

function reportPaths(suffix: string) {
  return {
    markdown: `${BENCH_DIR}RESULTS${suffix}.md`,
    json: `${BENCH_DIR}results${suffix}.json`,
    baseline: `${BENCH_DIR}baseline.json`,
  };
}

async function main(): Promise<number> {
  let options: ReturnType<typeof parseOptions>;
  try {
    options = parseOptions(process.argv.slice(2));
  } catch (err) {
    process.stderr.write(`${(err as Error).message}\n\n${USAGE}\n`);
    return 2;
  }
  if (options.help) {
    process.stdout.write(`${USAGE}\n`);
    return 0;
  }
  const unknown = options.only.filter((id) => !SCENARIOS.some((s) => s.id === id));
  if (unknown.length > 0) {
    process.stderr.write(
      `unknown scenario(s): ${unknown.join(", ")}; known: ${SCENARIOS.map((s) => s.id).join(", ")}\n`,
    );
    return 2;
  }
  if (options.render) {
    const run = JSON.parse(readFileSync(`${BENCH_DIR}results.json`, "utf8")) as BenchRun;
    const written = writeReports(run, reportPaths(""), options.saveBaseline);
    log(`rendered ${written.join(", ")} from bench/results.json`);
    return 0;
  }
  const base = options.quick ? QUICK_SIZES : FULL_SIZES;
  const sizes: Sizes = { ...base, reps: options.reps ?? base.reps };

  log("building weftd (pnpm build)");
  await buildWeftd();
  const redisServer = await startRedisServer({ persistence: "none" });
  const redis = new Redis(redisServer.url, { maxRetriesPerRequest: null });
  try {
    if (options.profile) {
      const profile = options.only.includes("peer") ? runPeerProfile : runProfile;
      await profile({ redisUrl: redisServer.url, sizes, weftdArgs: WEFTD_ARGS, log });
      return 0;
    }
    const machine = await machineInfo(redis);
    log(
      `${machine.cores} cores, ${machine.memoryGiB} GiB, Node ${machine.node}, Redis ${machine.redis}, commit ${machine.commit}`,
    );
    const selected =
      options.only.length === 0 ? SCENARIOS : SCENARIOS.filter((s) => options.only.includes(s.id));
    const started = Date.now();
    const scenarios: ScenarioOutcome[] = [];
    let waitedS = 0;
    const shared = new Map<string, number>();
    for (const scenario of selected) {
      const outcome = await runScenario(
        scenario,
        sizes,
        options.quick,
        redisServer,
        redis,
        shared,
        options.waitQuietS,
        { peerPerRun: options.peerPerRun, weftdNodeFlags: options.weftdNodeFlags },
      );
      waitedS += outcome.load?.waitedS ?? 0;
      scenarios.push(outcome);
    }
    const full = !options.quick && options.only.length === 0 && options.reps === undefined;
    const run: BenchRun = {
      machine,
      mode: full ? "full" : options.quick ? "quick" : "partial",
      command: `pnpm bench${process.argv.length > 2 ? ` ${process.argv.slice(2).join(" ")}` : ""}`,
      weftdFlags: [...WEFTD_ARGS, "--log-level", "warn"],
      sizes,
      scenarios,
      totalMs: Date.now() - started - waitedS * 1000,
    };
    const suffix = full ? "" : "-partial";
    const written = writeReports(run, reportPaths(suffix), options.saveBaseline);
    process.stdout.write(consoleSummary(run));
    log(`wrote ${written.join(", ")} in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return scenarios.some((s) => s.error !== undefined) ? 1 : 0;
  } finally {
    redis.disconnect();
    await redisServer.close();
  }
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
    process.exit(1);
  },
);
