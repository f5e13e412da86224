import type { Timestamp } from "@bufbuild/protobuf/wkt";
import { timestampMs } from "@bufbuild/protobuf/wkt";
import { formatDuration, RunStatus, type TaskRun, TaskStatus } from "@weft/sdk";

/** Aligns rows into columns separated by two spaces, without trailing blanks. */
export function table(header: string[], rows: string[][]): string {
  const all = [header, ...rows];
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) =>
      r
        .map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .map((line) => `${line}\n`)
    .join("");
}

/** `2024-05-01T10:00:00Z` (no milliseconds), or `-` when unset. */
export function time(ts: Timestamp | undefined): string {
  if (ts === undefined) return "-";
  return new Date(timestampMs(ts)).toISOString().replace(/\.\d{3}Z$/, "Z");
}

/** Milliseconds between two timestamps (the second one defaulting to now). */
export function elapsedMs(from: Timestamp | undefined, to: Timestamp | undefined, now = Date.now()): number {
  if (from === undefined) return 0;
  return (to === undefined ? now : timestampMs(to)) - timestampMs(from);
}

/** A run status without its prefix: `SUCCEEDED`. */
export function runStatusName(status: RunStatus): string {
  return RunStatus[status] ?? String(status);
}

/** A task status without its prefix: `RUNNING`. */
export function taskStatusName(status: TaskStatus): string {
  return TaskStatus[status] ?? String(status);
}

/** How long a task ran (its last attempt), or `-` before it started. */
export function taskDuration(t: TaskRun, now = Date.now()): string {
  if (t.startTime === undefined) return "-";
  return formatDuration(elapsedMs(t.startTime, t.finishTime, now));
}

/** `attempt/max`, or `-` before the first attempt. */
export function attempts(t: TaskRun): string {
  return t.attempt === 0 ? "-" : `${t.attempt}/${t.maxAttempts}`;
}

/** JSON on one line. */
export function compactJson(value: unknown): string {
  return JSON.stringify(value);
}

/** Parses a run-status name given on the command line (`failed`, `TIMED_OUT`, `run_status_running`). */
export function parseRunStatus(text: string): RunStatus | undefined {
  const name = text
    .trim()
    .toUpperCase()
    .replace(/^RUN_STATUS_/, "")
    .replace(/-/g, "_");
  const value = (RunStatus as unknown as Record<string, number>)[name];
  return value === undefined || value === RunStatus.UNSPECIFIED ? undefined : (value as RunStatus);
}
