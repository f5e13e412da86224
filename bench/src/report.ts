import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import type { MachineLoad } from "./cpu.js";
import type { MachineInfo } from "./machine.js";
import { REPO_ROOT } from "./paths.js";
import type { Figure, ScenarioResult, Sizes, Target } from "./scenario.js";
import { type Summary, summarize } from "./stats.js";

/** A scenario's result, or the error that stopped it (reported, never hidden). */
export type ScenarioOutcome = ScenarioResult & { error?: string; load?: MachineLoad };

/** Everything one bench run produced. */
export interface BenchRun {
  machine: MachineInfo;
  mode: "full" | "quick" | "partial";
  command: string;
  /** Flags of every weftd the bench started. */
  weftdFlags: string[];
  sizes: Sizes;
  scenarios: ScenarioOutcome[];
  totalMs: number;
}

/** The "before" figures that the Before/after section compares with (bench/baseline.json). */
export interface Baseline {
  commit: string;
  date: string;
  figures: Record<string, { label: string; unit: string; median: number; digits?: number; target?: string }>;
}

export type Verdict = "PASS" | "MISS";

/** Judges a figure against its target: the median, or the worst repetition for `on: "max"`. */
export function verdict(summary: Summary, target: Target): Verdict {
  const v = target.on === "max" ? summary.max : summary.median;
  const ok =
    target.op === ">=" ? v >= target.value : target.op === "<=" ? v <= target.value : v < target.value;
  return ok ? "PASS" : "MISS";
}

/** A number as printed in the report. */
export function fmt(value: number, digits?: number): string {
  if (!Number.isFinite(value)) return "n/a";
  const d = digits ?? (Math.abs(value) >= 100 ? 0 : 2);
  return value.toLocaleString("en-US", { minimumFractionDigits: d, maximumFractionDigits: d });
}

function cell(figure: Figure, summary: Summary): string {
  const unit = figure.unit === "%" ? " %" : ` ${figure.unit}`;
  if (summary.n <= 1) return `${fmt(summary.median, figure.digits)}${unit}`;
  return `${fmt(summary.median, figure.digits)}${unit} (${fmt(summary.min, figure.digits)}–${fmt(summary.max, figure.digits)})`;
}

function judged(figure: Figure, summary: Summary): string {
  if (figure.target === undefined) return "";
  const which = figure.target.on === "max" ? " (worst)" : "";
  return `${verdict(summary, figure.target)}: ${figure.target.text}${which}`;
}

function table(header: string[], rows: string[][]): string {
  const esc = (s: string) => s.replaceAll("|", "\\|");
  return [
    `| ${header.map(esc).join(" | ")} |`,
    `| ${header.map(() => "---").join(" | ")} |`,
    ...rows.map((r) => `| ${r.map(esc).join(" | ")} |`),
  ].join("\n");
}

/** The figures of a run, keyed "scenario.figure". */
export function headline(run: BenchRun): Baseline["figures"] {
  const out: Baseline["figures"] = {};
  for (const s of run.scenarios) {
    for (const f of s.figures) {
      out[`${s.id}.${f.key}`] = {
        label: `${s.title}: ${f.label}`,
        unit: f.unit,
        median: summarize(f.samples).median,
        ...(f.digits === undefined ? {} : { digits: f.digits }),
        ...(f.target === undefined ? {} : { target: f.target.text }),
      };
    }
  }
  return out;
}

function machineSection(m: MachineInfo): string {
  return table(
    ["", ""],
    [
      ["CPU", `${m.cores} cores, ${m.cpuModel}`],
      ["Memory", `${m.memoryGiB} GiB`],
      ["OS", m.kernel],
      ["Node", m.node],
      ["Redis", `${m.redis} (bench's own redis-server, loopback, no persistence)`],
      ["BullMQ", m.bullmq],
      ["Date", m.date],
      ["Commit", `${m.commit}${m.dirty ? " (with uncommitted changes outside bench/)" : ""}`],
    ],
  );
}

function setupSection(run: BenchRun): string {
  return [
    "* weftd runs compiled, as `pnpm start` and the container image run it (`pnpm build`, then " +
      "`node --conditions=weft-dist daemon/dist/main.js`), one process per replica, with " +
      `\`${run.weftdFlags.join(" ")}\`; a fresh weftd per scenario and an emptied Redis (FLUSHALL) before each.`,
    "* Clients are the generated services of `@weft/sdk` on the SDK's transport (`createWeftTransport`, as " +
      "`createWeftClient` uses it: gRPC over HTTP/2, cleartext loopback; unary calls written straight to " +
      "node:http2 streams, streaming calls through `@connectrpc/connect-node`); workers are `@weft/worker`.",
    "* All processes (Redis, weftd, worker processes, the bench) share the machine. Each scenario's footer says how " +
      "busy the machine was and how much of that was other processes (tsx's esbuild helpers, which transpile at start-up, count among them): figures taken while others used the CPU are lower than the machine can do.",
  ].join("\n");
}

/** Text between `<!-- name:start -->` and `<!-- name:end -->` of an existing RESULTS.md: kept across regenerations. */
function kept(previous: string | undefined, name: string): string {
  if (previous === undefined) return "";
  const start = `<!-- ${name}:start -->`;
  const a = previous.indexOf(start);
  const b = previous.indexOf(`<!-- ${name}:end -->`);
  if (a < 0 || b < a) return "";
  return previous.slice(a + start.length, b).trim();
}

/** A hand-written block that survives regeneration, with `placeholder` until someone writes it. */
function keptBlock(previous: string | undefined, name: string, placeholder: string): string[] {
  return [`<!-- ${name}:start -->`, kept(previous, name) || placeholder, `<!-- ${name}:end -->`];
}

function beforeAfterSection(
  run: BenchRun,
  baseline: Baseline | undefined,
  previous: string | undefined,
): string {
  const lines = ["## Before/after", ""];
  const now = headline(run);
  const sameRun = baseline !== undefined && baseline.date === run.machine.date;
  if (run.mode !== "full") {
    lines.push("Only full runs (`pnpm bench`) are compared with the baseline: see bench/RESULTS.md.");
  } else if (baseline === undefined) {
    lines.push("No baseline yet: run `pnpm bench --save-baseline` to record one.");
  } else {
    lines.push(
      `Before: commit ${baseline.commit}, ${baseline.date} (bench/baseline.json). ` +
        (sameRun
          ? "After: _pending — the lead fills this column by re-running `pnpm bench` after the optimisations._"
          : `After: this run, commit ${run.machine.commit}, ${run.machine.date}.`),
      "",
    );
    const rows = Object.entries(baseline.figures).map(([key, before]) => {
      const after = now[key];
      const unit = before.unit === "%" ? " %" : ` ${before.unit}`;
      const change =
        sameRun || after === undefined || before.median === 0
          ? ""
          : `${after.median >= before.median ? "+" : ""}${fmt(((after.median - before.median) / before.median) * 100, 1)} %`;
      return [
        before.label,
        `${fmt(before.median, before.digits)}${unit}`,
        sameRun || after === undefined ? "—" : `${fmt(after.median, before.digits)}${unit}`,
        change,
        before.target ?? "",
      ];
    });
    lines.push(table(["figure (median)", "before", "after", "change", "target"], rows));
  }
  lines.push(
    "",
    "### What changed",
    "",
    ...keptBlock(
      previous,
      "notes",
      "_(to be filled after optimising: what was changed and why the figures moved)_",
    ),
  );
  return lines.join("\n");
}

function scenarioFooter(s: ScenarioOutcome): string {
  const parts = [`Scenario time: ${fmt(s.durationMs / 1000, 1)} s`];
  if (s.load !== undefined) {
    parts.push(
      `machine ${fmt(s.load.busyPercent, 0)} % busy, of which ${fmt(s.load.othersPercent, 0)} % of the machine by processes outside the bench`,
      `load average ${fmt(s.load.loadAverageStart, 2)} → ${fmt(s.load.loadAverageEnd, 2)}`,
    );
    if (s.load.waitedS !== undefined)
      parts.push(`waited ${fmt(s.load.waitedS, 0)} s before it for a quiet machine`);
  }
  return `${parts.join("; ")}.`;
}

/** The Markdown report. */
export function renderMarkdown(run: BenchRun, baseline: Baseline | undefined, previous?: string): string {
  const out: string[] = [
    "# Weft benchmarks",
    "",
    `Produced by \`${run.command}\` (${run.mode} run, ${fmt(run.totalMs / 1000, 0)} s of scenarios). ` +
      "Every figure is the median of the repetitions, with the minimum and maximum in brackets; " +
      "targets are judged on the median, RSS targets on the worst repetition. A MISS is reported as measured.",
    "",
    "## Machine",
    "",
    machineSection(run.machine),
    "",
    setupSection(run),
    "",
    "## Targets",
    "",
  ];
  const targetRows: string[][] = [];
  for (const s of run.scenarios) {
    for (const f of s.figures) {
      if (f.target === undefined) continue;
      const sum = summarize(f.samples);
      targetRows.push([s.title, f.label, cell(f, sum), f.target.text, verdict(sum, f.target)]);
    }
    if (s.error !== undefined)
      targetRows.push([s.title, "scenario failed", s.error.split("\n")[0] ?? "", "", "MISS"]);
  }
  out.push(table(["scenario", "figure", "measured", "target", ""], targetRows), "");
  out.push(
    "### What limits the misses",
    "",
    ...keptBlock(
      previous,
      "analysis",
      "_(written by hand after a full run; kept when this file is regenerated)_",
    ),
    "",
  );

  for (const s of run.scenarios) {
    out.push(`## ${s.title}`, "");
    for (const line of s.setup) out.push(`* ${line}`);
    if (s.setup.length > 0) out.push("");
    if (s.error !== undefined) out.push("**The scenario failed:**", "", "```", s.error, "```", "");
    if (s.figures.length > 0) {
      out.push(
        table(
          ["figure", "median (min–max)", "target"],
          s.figures.map((f) => {
            const sum = summarize(f.samples);
            return [f.label, cell(f, sum), judged(f, sum)];
          }),
        ),
        "",
      );
    }
    for (const t of s.tables) out.push(`**${t.title}**`, "", table(t.header, t.rows), "");
    for (const n of s.notes) out.push(`* ${n}`);
    if (s.notes.length > 0) out.push("");
    out.push(`_${scenarioFooter(s)}_`, "");
  }
  out.push(beforeAfterSection(run, baseline, previous), "");
  out.push(
    "## Reproduce",
    "",
    "```",
    "pnpm bench                  # full run: this file and bench/results.json",
    "pnpm bench --quick          # under a minute, bench/RESULTS-partial.md",
    "pnpm bench --only latency   # one scenario",
    "pnpm bench --profile        # scenario 1 with weftd under node --cpu-prof; top functions by self time",
    "```",
    "",
  );
  return out.join("\n");
}

/** The JSON results: every sample, with summaries and verdicts. */
export function renderJson(run: BenchRun): string {
  return `${JSON.stringify(
    {
      ...run,
      scenarios: run.scenarios.map((s) => ({
        ...s,
        figures: s.figures.map((f) => {
          const sum = summarize(f.samples);
          return { ...f, ...sum, ...(f.target === undefined ? {} : { verdict: verdict(sum, f.target) }) };
        }),
      })),
    },
    null,
    2,
  )}\n`;
}

/**
 * Lets the repository's formatter lay out the JSON files, so that `biome check .` stays clean whatever
 * the shape of the figures; a missing Biome leaves JSON.stringify's layout.
 */
function formatJson(files: string[]): void {
  try {
    execFileSync(`${REPO_ROOT}node_modules/.bin/biome`, ["format", "--write", ...files], { stdio: "ignore" });
  } catch {
    // Not installed, or a file Biome ignores: the JSON stays as written.
  }
}

/** Writes the report files; returns their paths. */
export function writeReports(
  run: BenchRun,
  paths: { markdown: string; json: string; baseline: string },
  saveBaseline: boolean,
): string[] {
  let baseline: Baseline | undefined;
  if (existsSync(paths.baseline)) baseline = JSON.parse(readFileSync(paths.baseline, "utf8")) as Baseline;
  if (saveBaseline || (baseline === undefined && run.mode === "full")) {
    baseline = { commit: run.machine.commit, date: run.machine.date, figures: headline(run) };
    writeFileSync(paths.baseline, `${JSON.stringify(baseline, null, 2)}\n`);
  }
  const previous = existsSync(paths.markdown) ? readFileSync(paths.markdown, "utf8") : undefined;
  writeFileSync(paths.markdown, renderMarkdown(run, baseline, previous));
  writeFileSync(paths.json, renderJson(run));
  formatJson([paths.json, ...(saveBaseline || run.mode === "full" ? [paths.baseline] : [])]);
  return [paths.markdown, paths.json, ...(saveBaseline ? [paths.baseline] : [])];
}

/** The figures with their verdicts, for the terminal. */
export function consoleSummary(run: BenchRun): string {
  const out: string[] = [];
  for (const s of run.scenarios) {
    out.push("", `${s.title}${s.error === undefined ? "" : "  — FAILED"}`);
    if (s.error !== undefined) out.push(`  ${s.error.split("\n")[0] ?? ""}`);
    for (const f of s.figures) {
      const sum = summarize(f.samples);
      const range = sum.n > 1 ? ` (${fmt(sum.min, f.digits)}–${fmt(sum.max, f.digits)})` : "";
      const judged = f.target === undefined ? "" : `   ${verdict(sum, f.target)} ${f.target.text}`;
      out.push(`  ${f.label}: ${fmt(sum.median, f.digits)} ${f.unit}${range}${judged}`);
    }
  }
  return `${out.join("\n")}\n`;
}
