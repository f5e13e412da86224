import { CircuitState } from "@weft/sdk/gen/weft/v1/circuit_breaker_pb.js";
import type { RedisClient } from "../../redis/redis.js";
import type { Keys } from "../shared/index.js";
import type { Circuits } from "./circuits.js";
import type { DeadLetterIndex } from "./dead-letter-index.js";

/** How old the figures read from Redis may be before a scrape reads them again, in ms. */
const FRESH_MS = 1000;

/** Most queues whose dead letters and circuits a scrape reads. */
const MAX_QUEUES = 1000;

/** A circuit state as /metrics shows it: 0 closed, 1 open, 2 half-open. */
const STATE_VALUE: Record<number, number> = {
  [CircuitState.CLOSED]: 0,
  [CircuitState.OPEN]: 1,
  [CircuitState.HALF_OPEN]: 2,
};

/**
 * The failures' figures on /metrics: tasks this replica failed for good, per queue (a counter), and,
 * read from Redis (shared by every replica), the dead letters per queue and the circuits' states.
 * The Redis figures are read when scraped, at most once a second, in the background: a scrape
 * shows the last ones read.
 */
export class FailureStats {
  /** Tasks this replica recorded as failed for good, by queue. */
  readonly failedForGood = new Map<string, number>();
  /** Dead letters by queue, and in all. */
  deadLetters = new Map<string, number>();
  deadLettersTotal = 0;
  /** Circuit state by `queue="…",handler="…"`. */
  circuitStates = new Map<string, number>();
  private readAt = 0;
  private reading = false;

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly index: DeadLetterIndex,
    private readonly circuits: Circuits,
  ) {}

  /** Counts a task that failed for good. */
  countFailure(queue: string): void {
    this.failedForGood.set(queue, (this.failedForGood.get(queue) ?? 0) + 1);
  }

  /** Reads the figures from Redis again if they are older than a second (not awaited by scrapes). */
  refresh(): void {
    if (this.reading || Date.now() - this.readAt < FRESH_MS) return;
    this.reading = true;
    this.read()
      .catch(() => {
        // Redis away: the last figures stay until it answers again.
      })
      .finally(() => {
        this.reading = false;
        this.readAt = Date.now();
      });
  }

  private async read(): Promise<void> {
    const queues = await this.redis.zrange(this.keys.queueIndex(), 0, MAX_QUEUES - 1);
    const sizes = await this.index.sizes(queues);
    const states = new Map<string, number>();
    for (const queue of queues) {
      for (const c of await this.circuits.describe(queue)) {
        states.set(`queue="${queue}",handler="${c.handler}"`, STATE_VALUE[c.state] ?? 0);
      }
    }
    this.deadLetters = sizes.byQueue;
    this.deadLettersTotal = sizes.total;
    this.circuitStates = states;
  }
}
