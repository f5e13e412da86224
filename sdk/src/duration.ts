import { create } from "@bufbuild/protobuf";
import { type Duration, DurationSchema } from "@bufbuild/protobuf/wkt";

/** A duration: milliseconds as a number, or a string such as `"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"1d"`. */
export type DurationInput = number | string;

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };
const DURATION = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/;

/** Milliseconds of a {@link DurationInput}. @throws TypeError naming the value when it is not one. */
export function durationMs(input: DurationInput): number {
  if (typeof input === "number") {
    if (!Number.isFinite(input) || input < 0)
      throw new TypeError(`${input} is not a duration in milliseconds`);
    return input;
  }
  const match = DURATION.exec(input.trim());
  if (match === null) {
    throw new TypeError(`"${input}" is not a duration: use a number and ms, s, m, h or d, e.g. "30s"`);
  }
  return Number(match[1]) * (UNIT_MS[match[2] ?? "ms"] ?? 1);
}

/** A google.protobuf.Duration from a {@link DurationInput}. */
export function toDuration(input: DurationInput): Duration {
  const ms = Math.round(durationMs(input));
  return create(DurationSchema, { seconds: BigInt(Math.floor(ms / 1000)), nanos: (ms % 1000) * 1_000_000 });
}

/** Milliseconds of a google.protobuf.Duration. */
export function fromDuration(duration: Duration): number {
  return Number(duration.seconds) * 1000 + Math.round(duration.nanos / 1_000_000);
}

/** A short, readable form of milliseconds: `850ms`, `1.2s`, `3m05s`, `2h10m`. */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.floor(ms / 1000);
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
