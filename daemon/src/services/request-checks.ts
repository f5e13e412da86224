import type { JsonValue } from "@bufbuild/protobuf";
import type { Duration, Value } from "@bufbuild/protobuf/wkt";
import { invalidArgument, jsonValueOf, type Violation } from "../engine/shared/index.js";

/** Collects violations of one request and throws them together. */
export class RequestCheck {
  private readonly violations: Violation[] = [];

  /** Records a violation when `ok` is false. */
  require(ok: boolean, field: string, description: string): this {
    if (!ok) this.violations.push({ field, description });
    return this;
  }

  /** Checks a required name of up to `max` characters from [A-Za-z0-9_.-]. */
  name(value: string, field: string, max = 128): this {
    if (value === "") return this.require(false, field, "is required");
    return this.require(
      value.length <= max && /^[A-Za-z0-9_.-]+$/.test(value),
      field,
      `must be 1-${max} characters from [A-Za-z0-9_.-]`,
    );
  }

  /** Checks a page size: 0 (the default) to 1000. */
  pageSize(value: number, field = "page_size"): this {
    return this.require(value >= 0 && value <= 1000, field, "must be between 0 and 1000");
  }

  /**
   * Checks a google.protobuf.Value (no empty Value, finite numbers, at most MAX_JSON_DEPTH levels)
   * and returns it as JSON; undefined when unset, or when it is invalid (then it is recorded).
   */
  json(value: Value | undefined, field: string): JsonValue | undefined {
    if (value === undefined) return undefined;
    const result = jsonValueOf(value);
    if ("json" in result) return result.json;
    this.violations.push({ field, description: result.problem });
    return undefined;
  }

  /** Throws INVALID_ARGUMENT if anything was recorded. */
  done(): void {
    if (this.violations.length > 0) throw invalidArgument(this.violations);
  }
}

/** A Duration in milliseconds, or NaN when it is out of range. */
export function durationMs(d: Duration | undefined): number {
  if (d === undefined) return 0;
  const ms = Number(d.seconds) * 1000 + Math.floor(d.nanos / 1_000_000);
  return d.seconds < 0n || d.nanos < 0 || d.nanos >= 1_000_000_000 ? Number.NaN : ms;
}

/** Page size with the default applied. */
export function pageSizeOf(value: number): number {
  return value === 0 ? 100 : value;
}
