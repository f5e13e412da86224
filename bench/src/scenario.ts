import type { Redis } from "ioredis";
import type { Weftd } from "./weftd.js";

/** A target a figure is judged against, e.g. "≥ 50 % of raw BullMQ". */
export interface Target {
  op: ">=" | "<=" | "<";
  value: number;
  /** Which summary is judged: the median of the repetitions, or the worst (max). */
  on: "median" | "max";
  /** The target as people read it. */
  text: string;
}

/** One measured figure: a value per repetition. */
export interface Figure {
  key: string;
  label: string;
  unit: string;
  samples: number[];
  target?: Target;
  /** Decimal places when printed (default: 0 for values ≥ 100, else 2). */
  digits?: number;
}

/** A free-form table (e.g. growth of definitions with size). */
export interface Table {
  title: string;
  header: string[];
  rows: string[][];
}

/** What one scenario reports. */
export interface ScenarioResult {
  id: string;
  title: string;
  /** How it was measured: one line each. */
  setup: string[];
  figures: Figure[];
  tables: Table[];
  /** Observations, limits, caveats. */
  notes: string[];
  durationMs: number;
}

/** Sizes of a bench run. */
export interface Sizes {
  reps: number;
  /** Scenario 1 and 7: tasks per measurement. */
  throughputTasks: number;
  warmupTasks: number;
  workerConcurrency: number;
  /** Trigger calls in flight when starting one run per task. */
  triggerConcurrency: number;
  chainLength: number;
  scheduleSamples: number;
  fanWidth: number;
  watchers: number;
  watchChainLength: number;
  watchTaskMs: number;
  definitionSizes: number[];
  footprintRuns: number;
  /** Scenario 8: tasks of the run each worker runtime is measured on. */
  runtimeTasks: number;
  /** Scenario 9: failed runs resumed per repetition. */
  resumeRuns: number;
  /** The peer scenario (Weft against BullMQ FlowProducer). */
  peer: {
    /** Rounds: every shape on both sides, in turns. */
    rounds: number;
    /** Runs of the 3-task chain per chain shape. */
    runs: number;
    /** Runs in flight when each run is started by its own call. */
    lanes: number;
    /** Width of the 1 → N → 1 shape. */
    fanWidth: number;
    /** One-task runs of the latency shape. */
    latencySamples: number;
  };
  /** Time budgets (seconds) of the scenarios whose length depends on the engine's speed. */
  budgetS: {
    throughput: number;
    fanout: number;
    watchers: number;
    replicas: number;
    cluster: number;
    peer: number;
  };
}

/** What a scenario gets from the bench. */
export interface BenchContext {
  sizes: Sizes;
  quick: boolean;
  redisUrl: string;
  /** A client of the bench's Redis (INFO, FLUSHALL). */
  redis: Redis;
  /** Starts a weftd on the bench's Redis, or on `redisUrl` (stopped after the scenario). */
  startWeftd(extraArgs?: string[], redisUrl?: string): Promise<Weftd>;
  /** Runs `fn` when the scenario ends, last registered first. */
  defer(fn: () => Promise<void> | void): void;
  log(message: string): void;
  /** Figures one scenario leaves for a later one (e.g. scenario 1's RSS peak for scenario 6). */
  shared: Map<string, number>;
  /** Command-line switches scenarios read. */
  flags: {
    /** The peer scenario also runs Weft's SDK as it was before issue 25 (--peer-per-run). */
    peerPerRun: boolean;
    /** Node flags every weftd runs with (--weftd-node-flags). */
    weftdNodeFlags: string[];
  };
}

/** One scenario of the bench. */
export interface Scenario {
  id: string;
  title: string;
  run(ctx: BenchContext): Promise<Omit<ScenarioResult, "id" | "title" | "durationMs">>;
}

/** The RSS target of every scenario. */
export const RSS_TARGET: Target = { op: "<", value: 300, on: "max", text: "< 300 MiB" };

/** A figure for weftd's peak RSS, judged against the 300 MiB target. */
export function rssFigure(label: string, peaksMiB: number[], key = "weftd_rss_peak_mib"): Figure {
  return { key, label, unit: "MiB", samples: peaksMiB, target: RSS_TARGET, digits: 0 };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** How many repetitions (and tasks) fit a scenario's time budget. */
export interface Plan {
  reps: number;
  tasks: number;
  /** Says what was cut and why; undefined when nothing was. */
  note: string | undefined;
}

/**
 * Fits a scenario into its time budget from the duration of one repetition projected at the rates
 * measured during the warm-up: fewer repetitions first (down to one), then, when `mayShrinkTasks`,
 * fewer tasks (in thousands, at least `minTasks`). Keeps the full run within its 10 minutes whatever
 * the engine's speed, and says so in the report.
 */
export function planWithin(
  budgetS: number,
  wanted: { reps: number; tasks: number },
  secondsPerRep: number,
  options: { mayShrinkTasks: boolean; minTasks?: number },
): Plan {
  const reps = Math.max(1, Math.min(wanted.reps, Math.floor(budgetS / secondsPerRep)));
  let tasks = wanted.tasks;
  if (options.mayShrinkTasks && secondsPerRep > budgetS) {
    const fitted = Math.floor((wanted.tasks * budgetS) / secondsPerRep / 1000) * 1000;
    tasks = Math.min(wanted.tasks, Math.max(options.minTasks ?? 1000, fitted));
  }
  const cut: string[] = [];
  if (reps < wanted.reps) cut.push(`${repetitions(reps)} instead of ${wanted.reps}`);
  if (tasks < wanted.tasks)
    cut.push(`${tasks.toLocaleString("en-US")} tasks instead of ${wanted.tasks.toLocaleString("en-US")}`);
  const note =
    cut.length === 0
      ? undefined
      : `Time budget: ${cut.join(" and ")}: at the rates measured in the warm-up one repetition would take ${secondsPerRep.toFixed(0)} s, and this scenario has ${budgetS} s of the full run's 10 minutes.`;
  return { reps, tasks, note };
}

/** "1 repetition", "3 repetitions". */
export function repetitions(n: number): string {
  return `${n} repetition${n === 1 ? "" : "s"}`;
}
