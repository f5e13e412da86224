import { timestampMs } from "@bufbuild/protobuf/wkt";
import { formatDuration, RunStatus, type TaskRun, TaskStatus } from "@weft/sdk";
import { attempts, elapsedMs, runStatusName, taskDuration, taskStatusName } from "./format.js";
import type { Io } from "./io.js";
import type { RunState } from "./run-state.js";

const SYMBOL: Record<number, string> = {
  [TaskStatus.PENDING]: "·",
  [TaskStatus.QUEUED]: "○",
  [TaskStatus.RUNNING]: "▶",
  [TaskStatus.RETRYING]: "↻",
  [TaskStatus.SUCCEEDED]: "✔",
  [TaskStatus.FAILED]: "✖",
  [TaskStatus.CANCELLED]: "⊘",
  [TaskStatus.SKIPPED]: "-",
};

const COLOR: Record<number, string> = {
  [TaskStatus.RUNNING]: "36",
  [TaskStatus.RETRYING]: "33",
  [TaskStatus.SUCCEEDED]: "32",
  [TaskStatus.FAILED]: "31",
  [TaskStatus.CANCELLED]: "33",
  [TaskStatus.SKIPPED]: "2",
};

const RUN_COLOR: Record<number, string> = {
  [RunStatus.RUNNING]: "36",
  [RunStatus.SUCCEEDED]: "32",
  [RunStatus.FAILED]: "31",
  [RunStatus.CANCELLED]: "33",
  [RunStatus.TIMED_OUT]: "31",
};

const BAR_WIDTH = 30;

/** How to draw: the clock, the width, colours. */
export interface RenderOptions {
  now: number;
  columns: number;
  color: boolean;
}

/**
 * The lines of the live view of a run: a header with the run's status and age, a progress bar,
 * and one line per task with its status, attempt and duration (and why it waits or failed).
 */
export function renderLiveView(state: RunState, options: RenderOptions): string[] {
  const paint = (code: string | undefined, text: string) =>
    options.color && code !== undefined ? `\x1b[${code}m${text}\x1b[0m` : text;
  const { run } = state;
  const age = formatDuration(elapsedMs(run.createTime, run.finishTime, options.now));
  const lines = [
    `run ${run.id}  ${run.workflow} v${run.workflowVersion}  ${paint(RUN_COLOR[run.status], runStatusName(run.status))}  ${age}`,
  ];
  const { done, total } = state.progress();
  const filled = total === 0 ? 0 : Math.round((done / total) * BAR_WIDTH);
  lines.push(`[${"█".repeat(filled)}${"░".repeat(BAR_WIDTH - filled)}]  ${done}/${total} tasks`);
  const idWidth = Math.max(4, ...run.tasks.map((t) => t.taskId.length));
  for (const t of run.tasks) lines.push(taskLine(t, idWidth, options, paint));
  if (state.reconnecting !== undefined) lines.push(paint("33", state.reconnecting));
  return lines.map((l) => truncate(l, options.columns));
}

function taskLine(
  t: TaskRun,
  idWidth: number,
  options: RenderOptions,
  paint: (code: string | undefined, text: string) => string,
): string {
  const status = taskStatusName(t.status).padEnd(9);
  const parts = [
    `  ${paint(COLOR[t.status], `${SYMBOL[t.status] ?? "?"} ${t.taskId.padEnd(idWidth)}  ${status}`)}`,
  ];
  if (t.attempt > 0) parts.push(`attempt ${attempts(t).padEnd(5)}`, taskDuration(t, options.now).padStart(6));
  if (t.status === TaskStatus.QUEUED && t.waitingReason !== "") parts.push(`waiting: ${t.waitingReason}`);
  if (t.status === TaskStatus.RETRYING) {
    const next =
      t.nextAttemptTime === undefined
        ? ""
        : ` — retry in ${formatDuration(Math.max(0, timestampMs(t.nextAttemptTime) - options.now))}`;
    parts.push(`${errorText(t)}${next}`);
  }
  if (t.status === TaskStatus.FAILED) parts.push(paint("31", errorText(t)));
  return parts.join("  ").trimEnd();
}

function errorText(t: TaskRun): string {
  if (t.error === undefined) return "";
  return t.error.type === "" ? t.error.message : `${t.error.type}: ${t.error.message}`;
}

/** Cuts a line to the terminal width, not counting colour codes. */
function truncate(line: string, columns: number): string {
  let visible = 0;
  let out = "";
  for (let i = 0; i < line.length; i++) {
    if (line[i] === "\x1b") {
      const end = line.indexOf("m", i);
      out += line.slice(i, end + 1);
      i = end;
      continue;
    }
    if (visible >= columns - 1) break;
    out += line[i];
    visible++;
  }
  return out;
}

/** Draws the live view in place on a terminal, redrawing on each change and every 200 ms. */
export class LiveView {
  #drawn = 0;
  #timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly io: Io,
    private readonly state: RunState,
  ) {}

  /** Hides the cursor and draws the first frame. */
  start(): void {
    this.io.out("\x1b[?25l");
    this.draw();
    this.#timer = setInterval(() => this.draw(), 200);
  }

  /** Redraws the view. */
  draw(): void {
    const lines = renderLiveView(this.state, {
      now: Date.now(),
      columns: this.io.columns,
      color: this.io.color,
    });
    const up = this.#drawn > 0 ? `\x1b[${this.#drawn}A\r` : "";
    this.io.out(`${up}\x1b[J${lines.join("\n")}\n`);
    this.#drawn = lines.length;
  }

  /** Draws the last frame and gives the cursor back. */
  stop(): void {
    clearInterval(this.#timer);
    this.draw();
    this.io.out("\x1b[?25h");
  }
}
