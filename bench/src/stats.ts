/** Small statistics helpers: percentiles of latency samples, summaries of repeated figures. */

/** The `p`-th percentile (0–100) of `values`, linear interpolation between closest ranks; NaN when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  const a = sorted[lo] as number;
  const b = sorted[hi] as number;
  return a + (b - a) * (rank - lo);
}

/** Median, minimum and maximum of a figure measured several times. */
export interface Summary {
  median: number;
  min: number;
  max: number;
  n: number;
}

/** Summarises repetitions of one figure. */
export function summarize(samples: readonly number[]): Summary {
  if (samples.length === 0) return { median: Number.NaN, min: Number.NaN, max: Number.NaN, n: 0 };
  return {
    median: percentile(samples, 50),
    min: Math.min(...samples),
    max: Math.max(...samples),
    n: samples.length,
  };
}

/** p50 and p99 (and max) of one repetition's latency samples. */
export function latencyPercentiles(samples: readonly number[]): { p50: number; p99: number; max: number } {
  return { p50: percentile(samples, 50), p99: percentile(samples, 99), max: percentile(samples, 100) };
}
