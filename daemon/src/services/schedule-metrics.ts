import type { Engine } from "../engine/engine.js";
import type { MetricsRegistry } from "../observability/metrics.js";

/** The schedules' figures on /metrics: what this replica's fire steps did. */
export function registerScheduleMetrics(metrics: MetricsRegistry, engine: Engine): void {
  const s = engine.scheduleFires.stats;
  metrics.register(
    "weft_schedule_fires_total",
    "counter",
    "Runs this replica started for schedules' fire times (on time, catching up, or buffered).",
    () => s.fires,
  );
  metrics.register(
    "weft_schedule_skips_total",
    "counter",
    "Fire times this replica skipped because the schedule's previous run was still running.",
    () => s.skips,
  );
  metrics.register(
    "weft_schedule_misses_total",
    "counter",
    "Fire times this replica counted as missed: older than the catch-up window, or over its bound.",
    () => s.misses,
  );
  metrics.register(
    "weft_schedule_fire_failures_total",
    "counter",
    "Fires that could not start a run (the workflow version is gone, the input is over the limit).",
    () => s.failures,
  );
  metrics.register(
    "weft_schedule_fire_lag_seconds_sum",
    "counter",
    "Sum of the fire lags (from a fire's due time, jitter included, to its run started), in seconds.",
    () => s.lagSecondsSum,
  );
  metrics.register(
    "weft_schedule_fire_lag_seconds_count",
    "counter",
    "Fires whose lag is in weft_schedule_fire_lag_seconds_sum.",
    () => s.lagCount,
  );
  metrics.register(
    "weft_schedule_last_fire_lag_seconds",
    "gauge",
    "Lag of the latest fire on this replica, in seconds.",
    () => s.lastLagSeconds,
  );
}
