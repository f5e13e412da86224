import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { WorkerChild } from "./children.js";
import { parallelWorkflow, workflowClient } from "./clients.js";
import { runBatched, runIndependent, runOneWorkflow } from "./load.js";
import { BENCH_DIR, REPO_ROOT } from "./paths.js";
import type { Sizes } from "./scenario.js";
import { BATCH } from "./scenarios/throughput.js";
import { startWeftd } from "./weftd.js";

/** The part of a .cpuprofile (V8 CPU profile JSON) that self time needs. */
interface CpuProfile {
  nodes: {
    id: number;
    callFrame: { functionName: string; url: string; lineNumber: number };
    children?: number[];
  }[];
  samples: number[];
  timeDeltas: number[];
  /** µs on the monotonic clock that `process.hrtime` reads in every process of the machine. */
  startTime: number;
}

/** A stretch of a profile to summarise on its own: µs on the clock of `process.hrtime`. */
export interface ProfileWindow {
  name: string;
  fromUs: number;
  toUs: number;
}

/** Now, in µs on the clock V8's profiles stamp their samples with (the same in every process). */
export function monotonicUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}

/** Self time of one function (or of an area: a package or a source file). */
export interface SelfTime {
  name: string;
  ms: number;
  percent: number;
}

/** Functions and areas by self time. */
export interface ProfileSummary {
  totalMs: number;
  /** (idle), (program), (garbage collector): what is not JavaScript. */
  special: SelfTime[];
  functions: SelfTime[];
  areas: SelfTime[];
  /** Functions of the repository's own code by inclusive time (with everything they call). */
  ownInclusive: SelfTime[];
  /** Areas with the Node internals and native code they call counted as theirs. */
  areasWithInternals: SelfTime[];
}

const SPECIAL = new Set(["(idle)", "(program)", "(garbage collector)", "(root)"]);

/** Where a script URL belongs: a package of node_modules, a file of the repository, or Node itself. */
function areaOf(url: string): string {
  if (url === "") return "(native / V8)";
  if (url.startsWith("node:")) return "node: internals";
  const pkg = /node_modules\/\.pnpm\/[^/]+\/node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (pkg !== null) return `${pkg[1]} (package)`;
  const path = url.replace(/^file:\/\//, "");
  return path.startsWith(REPO_ROOT) ? path.slice(REPO_ROOT.length) : path;
}

function shortUrl(url: string): string {
  const area = areaOf(url);
  if (!area.endsWith("(package)")) return area;
  const rest = /node_modules\/\.pnpm\/[^/]+\/node_modules\/(?:@[^/]+\/)?[^/]+\/(.*)$/.exec(url)?.[1] ?? "";
  return `${area.replace(" (package)", "")}/${rest}`;
}

/**
 * Sums the self time of every function of a V8 CPU profile, or of the samples taken within `window`
 * only.
 */
export function summarizeProfile(profile: CpuProfile, top = 30, window?: ProfileWindow): ProfileSummary {
  if (window !== undefined) profile = samplesWithin(profile, window);
  const byNode = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  // A sample's time is the delta to the next sample (the last one gets none).
  for (let i = 0; i < profile.samples.length; i++) {
    const id = profile.samples[i] as number;
    selfUs.set(id, (selfUs.get(id) ?? 0) + (profile.timeDeltas[i + 1] ?? 0));
  }
  const functions = new Map<string, number>();
  const areas = new Map<string, number>();
  const special = new Map<string, number>();
  let total = 0;
  for (const [id, us] of selfUs) {
    const node = byNode.get(id);
    if (node === undefined) continue;
    total += us;
    const { functionName, url, lineNumber } = node.callFrame;
    if (SPECIAL.has(functionName)) {
      special.set(functionName, (special.get(functionName) ?? 0) + us);
      continue;
    }
    const where = url === "" ? "" : ` ${shortUrl(url)}:${lineNumber + 1}`;
    const key = `${functionName || "(anonymous)"}${where}`;
    functions.set(key, (functions.get(key) ?? 0) + us);
    const area = areaOf(url);
    areas.set(area, (areas.get(area) ?? 0) + us);
  }
  // Inclusive time of the repository's own functions: each sample counts once for every distinct
  // function of the repository on its stack.
  const parent = new Map<number, number>();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  const keyOf = (id: number): string | undefined => {
    const node = byNode.get(id);
    if (node === undefined) return undefined;
    const { functionName, url, lineNumber } = node.callFrame;
    const area = areaOf(url);
    if (
      area.includes("(package)") ||
      area.startsWith("node:") ||
      area.startsWith("(") ||
      area.startsWith("/")
    )
      return undefined;
    return `${functionName || "(anonymous)"} ${area}:${lineNumber + 1}`;
  };
  const inclusive = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i + 1] ?? 0;
    const seen = new Set<string>();
    for (let id: number | undefined = profile.samples[i]; id !== undefined; id = parent.get(id)) {
      const key = keyOf(id);
      if (key !== undefined && !seen.has(key)) {
        seen.add(key);
        inclusive.set(key, (inclusive.get(key) ?? 0) + us);
      }
    }
  }
  // Node internals and native frames belong to the nearest package or source file up the stack
  // (a socket write called by ioredis is ioredis's).
  const attributed = new Map<string, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    const us = profile.timeDeltas[i + 1] ?? 0;
    const leaf = byNode.get(profile.samples[i] as number);
    if (leaf === undefined || SPECIAL.has(leaf.callFrame.functionName)) continue;
    let owner = "node internals (no package on the stack)";
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const url = byNode.get(id)?.callFrame.url ?? "";
      const area = areaOf(url);
      if (url !== "" && !area.startsWith("node:")) {
        owner = area;
        break;
      }
    }
    attributed.set(owner, (attributed.get(owner) ?? 0) + us);
  }
  const ranked = (m: Map<string, number>, n: number) =>
    [...m]
      .sort((a, b) => b[1] - a[1])
      .slice(0, n)
      .map(([name, us]) => ({ name, ms: us / 1000, percent: (us / total) * 100 }));
  return {
    totalMs: total / 1000,
    special: ranked(special, 10),
    functions: ranked(functions, top),
    areas: ranked(areas, 20),
    ownInclusive: ranked(inclusive, 25),
    areasWithInternals: ranked(attributed, 20),
  };
}

/** The profile with only the samples taken within `window` (each keeps the time it accounts for). */
function samplesWithin(profile: CpuProfile, window: ProfileWindow): CpuProfile {
  const samples: number[] = [];
  // A sample's time is the delta to the next one: keep the two side by side, shifted as the summary reads them.
  const timeDeltas: number[] = [0];
  let at = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    at += profile.timeDeltas[i] ?? 0;
    if (at < window.fromUs || at > window.toUs) continue;
    samples.push(profile.samples[i] as number);
    timeDeltas.push(profile.timeDeltas[i + 1] ?? 0);
  }
  return { ...profile, samples, timeDeltas };
}

/** The summary as text. */
export function formatProfile(summary: ProfileSummary, what: string): string {
  const line = (t: SelfTime) =>
    `${t.ms.toFixed(0).padStart(8)} ms ${t.percent.toFixed(1).padStart(5)} %  ${t.name}`;
  return [
    `== ${what}: sampled ${(summary.totalMs / 1000).toFixed(1)} s of its main thread`,
    "",
    "not JavaScript:",
    ...summary.special.map(line),
    "",
    "self time by area (package or source file):",
    ...summary.areas.map(line),
    "",
    "self time by area, with the Node internals and native code each area calls counted as its own:",
    ...summary.areasWithInternals.map(line),
    "",
    "top functions by self time:",
    ...summary.functions.map(line),
    "",
    "the repository's own functions by inclusive time (self + callees):",
    ...summary.ownInclusive.map(line),
  ].join("\n");
}

/** The main-thread profile a process wrote into `dir` (Node names it CPU.<date>.<time>.<pid>.0.<seq>). */
export function mainThreadProfile(dir: string, pid: number): string {
  const file = readdirSync(dir).find((f) => f.startsWith("CPU.") && f.includes(`.${pid}.0.`));
  if (file === undefined)
    throw new Error(`process ${pid} wrote no profile into ${dir} (did it exit cleanly?)`);
  return file;
}

/**
 * Summarises one profile file, as a whole and then within each window, writes `<name>.top.txt` next
 * to it and returns the text.
 */
export function report(
  dir: string,
  file: string,
  what: string,
  windows: ProfileWindow[],
  log: (message: string) => void,
): string {
  const profile = JSON.parse(readFileSync(`${dir}/${file}`, "utf8")) as CpuProfile;
  const text = [
    formatProfile(summarizeProfile(profile), what),
    ...windows.map((w) => formatProfile(summarizeProfile(profile, 20, w), `${what}, while ${w.name}`)),
  ].join("\n\n");
  const top = file.replace(/\.cpuprofile$/, ".top.txt");
  writeFileSync(`${dir}/${top}`, `${text}\n`);
  log(`${what}: bench/profiles/${file} (summary in bench/profiles/${top})`);
  return text;
}

/**
 * `pnpm bench --profile`: scenario 1 (its three shapes, once) with weftd and the worker process under
 * `node --cpu-prof`, then the top functions of each profile by self time. The .cpuprofile files stay in
 * bench/profiles/ (open them in Chrome DevTools or speedscope for the call trees).
 */
export async function runProfile(options: {
  redisUrl: string;
  sizes: Sizes;
  weftdArgs: string[];
  log: (message: string) => void;
}): Promise<void> {
  const { sizes, log } = options;
  const dir = `${BENCH_DIR}profiles`;
  mkdirSync(dir, { recursive: true });
  // Every thread writes its own profile (tsx's loader runs in a second thread): thread 0 is the main one.
  const cpuProf = ["--cpu-prof", "--cpu-prof-dir", dir];
  const weftd = await startWeftd({
    redisUrl: options.redisUrl,
    prefix: "bench",
    args: options.weftdArgs,
    nodeFlags: cpuProf,
  });
  const worker = await WorkerChild.weft(
    {
      addresses: [weftd.address],
      queue: "tp",
      concurrency: sizes.workerConcurrency,
      sleepMs: 0,
      deferStart: false,
    },
    cpuProf,
  );
  const windows: ProfileWindow[] = [];
  try {
    const client = workflowClient(weftd.address);
    const n = sizes.throughputTasks;
    await client.submitWorkflow({ definition: parallelWorkflow("tp-one", "tp", 1) });
    await client.submitWorkflow({ definition: parallelWorkflow("tp-par", "tp", n) });
    log(
      `profiling weftd (pid ${weftd.pid}) and the worker process (pid ${worker.pid}): ${n} runs of a 1-task workflow by Trigger calls, as many by BatchTrigger, then 1 run of ${n} tasks`,
    );
    /** Runs one shape, remembering when it ran so that each profile can be summarised over it too. */
    const shape = async <T>(name: string, run: () => Promise<T>): Promise<T> => {
      const fromUs = monotonicUs();
      const result = await run();
      windows.push({ name, fromUs, toUs: monotonicUs() });
      return result;
    };
    const a = await shape(`${n} runs were started by Trigger calls`, () =>
      runIndependent([client], "tp-one", n, sizes.triggerConcurrency, worker),
    );
    log(`  ${n} runs: ${a.tasksPerSecond.toFixed(0)} tasks/s (under the profiler)`);
    const c = await shape(`${n} runs were started by BatchTrigger`, () =>
      runBatched(client, "tp-one", n, BATCH, worker),
    );
    log(`  ${n} runs by BatchTrigger: ${c.tasksPerSecond.toFixed(0)} tasks/s (under the profiler)`);
    const b = await shape(`1 run of ${n} tasks ran`, () => runOneWorkflow(client, "tp-par", n, worker));
    log(`  1 run × ${n} tasks: ${b.tasksPerSecond.toFixed(0)} tasks/s (under the profiler)`);
  } finally {
    await worker.stop();
    await weftd.stop(60_000);
  }
  const texts = [
    report(dir, mainThreadProfile(dir, weftd.pid), "weftd", windows, log),
    report(
      dir,
      mainThreadProfile(dir, worker.pid),
      `worker process (@weft/worker, concurrency ${sizes.workerConcurrency})`,
      windows,
      log,
    ),
  ];
  process.stdout.write(`${texts.join("\n\n")}\n`);
}
