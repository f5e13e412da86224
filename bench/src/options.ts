import { parseArgs } from "node:util";
import type { Sizes } from "./scenario.js";

/** The bench's command line. */
export interface BenchOptions {
  quick: boolean;
  only: string[];
  profile: boolean;
  /** Overrides the number of repetitions. */
  reps: number | undefined;
  /** Replace bench/baseline.json (the "before" of RESULTS.md) with this run's figures. */
  saveBaseline: boolean;
  /** Re-render RESULTS.md from bench/results.json without measuring. */
  render: boolean;
  /** Before each scenario, wait up to this many seconds for the machine to be idle (other processes). */
  waitQuietS: number;
  /** The peer scenario also measures the SDK's per-run waits and unbatched triggers, in the same turns. */
  peerPerRun: boolean;
  /** Node flags every weftd the bench starts runs with (e.g. V8 heap settings to compare). */
  weftdNodeFlags: string[];
  help: boolean;
}

export const USAGE = `Usage: pnpm bench [--quick] [--only <scenario>[,<scenario>…]] [--reps <n>] [--wait-quiet <s>] [--peer-per-run] [--weftd-node-flags "<flags>"] [--profile] [--render] [--save-baseline]

  --quick           small sizes, one repetition: under a minute, for development
  --only <ids>      run only these scenarios (comma-separated or repeated):
                    throughput, latency, fanout, watchers, definitions, footprint, replicas, runtimes,
                    resume, schedules, cluster, peer
  --reps <n>        repetitions of every figure (default 3, 1 with --quick)
  --wait-quiet <s>  before each scenario, wait up to <s> seconds until other processes leave the CPU
                    idle (< 15 % busy for 2 s); the wait is not part of the 10 minutes
  --peer-per-run    the peer scenario also runs Weft with the SDK's per-run waits and unbatched triggers
                    (sharedWatch: false, batchTriggers: false), in the same turns
  --weftd-node-flags "<flags>"
                    Node flags for every weftd the bench starts, space-separated (e.g.
                    "--max-semi-space-size=8"), to compare V8 settings; the report names them
  --profile         run scenario 1 once with weftd under node --cpu-prof (profiles in bench/profiles/)
                    and print the functions with the most self time; with --only peer, Weft's side
                    of the peer scenario instead
  --render          measure nothing: write bench/RESULTS.md again from bench/results.json (after editing
                    the hand-written parts, or with --save-baseline to reset the "before" column)
  --save-baseline   make this run's figures the "before" column of RESULTS.md (bench/baseline.json)

A full run writes bench/RESULTS.md and bench/results.json; --quick or --only write
bench/RESULTS-partial.md and bench/results-partial.json instead (not committed).`;

export function parseOptions(argv: string[]): BenchOptions {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    options: {
      quick: { type: "boolean", default: false },
      only: { type: "string", multiple: true },
      profile: { type: "boolean", default: false },
      reps: { type: "string" },
      "save-baseline": { type: "boolean", default: false },
      "wait-quiet": { type: "string", default: "0" },
      "peer-per-run": { type: "boolean", default: false },
      "weftd-node-flags": { type: "string", default: "" },
      render: { type: "boolean", default: false },
      help: { type: "boolean", short: "h", default: false },
    },
  });
  const reps = values.reps === undefined ? undefined : Number(values.reps);
  if (reps !== undefined && (!Number.isInteger(reps) || reps < 1))
    throw new Error(`--reps must be a positive integer, got "${values.reps}"`);
  const waitQuietS = Number(values["wait-quiet"]);
  if (!Number.isFinite(waitQuietS) || waitQuietS < 0)
    throw new Error(`--wait-quiet must be a number of seconds, got "${values["wait-quiet"]}"`);
  return {
    waitQuietS,
    peerPerRun: values["peer-per-run"] === true,
    weftdNodeFlags: (values["weftd-node-flags"] ?? "").split(/\s+/).filter((f) => f !== ""),
    render: values.render === true,
    quick: values.quick === true,
    only: (values.only ?? [])
      .flatMap((s) => s.split(","))
      .map((s) => s.trim())
      .filter((s) => s !== ""),
    profile: values.profile === true,
    reps,
    saveBaseline: values["save-baseline"] === true,
    help: values.help === true,
  };
}

/** Sizes of the full run: the figures the issue asks for. */
export const FULL_SIZES: Sizes = {
  reps: 3,
  throughputTasks: 20_000,
  warmupTasks: 1_000,
  workerConcurrency: 64,
  triggerConcurrency: 64,
  chainLength: 200,
  scheduleSamples: 200,
  fanWidth: 10_000,
  watchers: 1_000,
  watchChainLength: 30,
  watchTaskMs: 100,
  definitionSizes: [1_000, 10_000, 100_000],
  footprintRuns: 2_000,
  runtimeTasks: 10_000,
  resumeRuns: 1_000,
  peer: { rounds: 5, runs: 2_000, lanes: 64, fanWidth: 1_000, latencySamples: 200 },
  budgetS: { throughput: 260, fanout: 60, watchers: 90, replicas: 150, cluster: 120, peer: 180 },
};

/** Sizes of --quick: the same scenarios, smaller, once, with tight time budgets. */
export const QUICK_SIZES: Sizes = {
  reps: 1,
  throughputTasks: 1_000,
  warmupTasks: 100,
  workerConcurrency: 64,
  triggerConcurrency: 64,
  chainLength: 30,
  scheduleSamples: 30,
  fanWidth: 500,
  watchers: 200,
  watchChainLength: 8,
  watchTaskMs: 100,
  definitionSizes: [1_000, 10_000],
  footprintRuns: 300,
  runtimeTasks: 1_000,
  resumeRuns: 200,
  peer: { rounds: 1, runs: 300, lanes: 64, fanWidth: 200, latencySamples: 30 },
  budgetS: { throughput: 6, fanout: 3, watchers: 6, replicas: 4, cluster: 6, peer: 20 },
};
