import type { JsonValue } from "@bufbuild/protobuf";
import { type KeyPolicy, keyPolicyOf, type Limit, type Policy } from "../../policy.js";
import type { RedisClient } from "../../redis/redis.js";
import type { Keys } from "../shared/index.js";

// A sliding-window log: the start times of the last window, one member each,
// on Redis's clock so that every replica agrees. KEYS[1]: the window.
// ARGV: windowMs, max, member. Returns {0, now} when a start is allowed (and
// recorded at `now`), else {ms to wait, now}.
const ACQUIRE = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window, max = tonumber(ARGV[1]), tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
if redis.call('ZCARD', KEYS[1]) < max then
  redis.call('ZADD', KEYS[1], now, ARGV[3])
  redis.call('PEXPIRE', KEYS[1], window)
  return {0, now}
end
local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {math.max(1, tonumber(oldest[2]) + window - now), now}
`;

/** The answer of a limiter: 0 ms to wait (a slot was taken at `at`), or how long to wait. */
export interface Acquired {
  waitMs: number;
  /** Redis's clock when the slot was taken (or refused), in ms. */
  at: number;
}

const PLACEHOLDER = /\{\{\s*input((?:\.[A-Za-z0-9_-]+)+)\s*\}\}/g;

/**
 * Rate limits per rate-limit key, shared by every queue and replica. A task
 * over its key's limit is not failed and uses no attempt: the caller delays
 * its job until the window has room (BullMQ's delayed set, so nothing polls).
 */
export class KeyLimiter {
  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly policy: Policy,
  ) {}

  /** Whether any key limit is configured at all. */
  get active(): boolean {
    return this.policy.keys.length > 0;
  }

  /** Fills `{{input.a.b}}` placeholders from the run input (missing values render empty). */
  static render(template: string, runInput: JsonValue | undefined): string {
    return template.replace(PLACEHOLDER, (_, path: string) => {
      let value: JsonValue | undefined = runInput;
      for (const part of path.slice(1).split(".")) {
        value =
          value !== null && typeof value === "object" && !Array.isArray(value)
            ? (value as Record<string, JsonValue>)[part]
            : undefined;
      }
      return value === undefined || value === null
        ? ""
        : typeof value === "string"
          ? value
          : JSON.stringify(value);
    });
  }

  /** Whether a template needs the run input. */
  static needsInput(template: string): boolean {
    return template.includes("{{");
  }

  /** The limit that applies to a key, if any. */
  limitOf(key: string): KeyPolicy | undefined {
    return key === "" ? undefined : keyPolicyOf(this.policy, key);
  }

  /** Takes a slot for one start under a rate-limit key. */
  acquire(key: string, limit: Limit, member: string): Promise<Acquired> {
    return this.take(`${this.keys.prefix}:rl:{${key}}`, limit, member);
  }

  /** Takes a slot for one start in a task queue with a rate limit. */
  acquireQueue(queue: string, limit: Limit, member: string): Promise<Acquired> {
    return this.take(`${this.keys.prefix}:qrl:{${queue}}`, limit, member);
  }

  private async take(key: string, limit: Limit, member: string): Promise<Acquired> {
    const [waitMs, at] = (await this.redis.eval(ACQUIRE, 1, key, limit.perMs, limit.max, member)) as [
      number,
      number,
    ];
    return { waitMs: Number(waitMs), at: Number(at) };
  }
}
