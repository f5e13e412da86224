import type { Engine } from "../engine/engine.js";
import type { MetricsRegistry } from "../observability/metrics.js";

/** A label value as Prometheus's text format wants it. */
function label(value: string): string {
  return value.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n");
}

/** The failures' figures on /metrics: tasks failed for good, dead letters, circuit breakers, resumes. */
export function registerFailureMetrics(metrics: MetricsRegistry, engine: Engine): void {
  const stats = engine.failureStats;
  metrics.register(
    "weft_tasks_failed_total",
    "counter",
    "Tasks this replica recorded as failed for good (retries exhausted, a non-retryable error, a timeout), by queue.",
    () => new Map([...stats.failedForGood].map(([q, n]) => [`queue="${label(q)}"`, n])),
  );
  metrics.register(
    "weft_dead_letters",
    "gauge",
    "Entries in the dead-letter view, by queue (shared by every replica; read from Redis at most once a second).",
    () => {
      stats.refresh();
      return new Map([...stats.deadLetters].map(([q, n]) => [`queue="${label(q)}"`, n]));
    },
  );
  metrics.register(
    "weft_circuit_state",
    "gauge",
    "State of each circuit breaker that has one: 0 closed, 1 open, 2 half-open (handler empty: the whole queue's).",
    () => {
      stats.refresh();
      return stats.circuitStates;
    },
  );
  metrics.register(
    "weft_circuit_transitions_total",
    "counter",
    "Circuit breaker state changes this replica made, by queue, handler and new state.",
    () => engine.circuits.transitions,
  );
  metrics.register(
    "weft_runs_resumed_total",
    "counter",
    "Runs this replica resumed.",
    () => engine.resumes.resumed,
  );
  metrics.register(
    "weft_dead_letters_discarded_total",
    "counter",
    "Dead letters this replica discarded.",
    () => engine.deadLetters.discarded,
  );
}
