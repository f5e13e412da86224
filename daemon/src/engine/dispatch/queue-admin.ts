import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { type Queue, QueueSchema, RateLimitSchema } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import type { Logger } from "pino";
import type { Limit, Policy } from "../../policy.js";
import type { RedisClient } from "../../redis/redis.js";
import type { Keys } from "../shared/index.js";
import type { TaskQueues } from "./task-queues.js";

/** A change to a queue's limits; unset fields stay as they are. */
export interface QueueUpdate {
  rateLimit?: Limit | null;
  concurrency?: number;
  paused?: boolean;
}

/**
 * Task queue administration. Concurrency and pause are BullMQ's global ones
 * (in the queue's meta key). The rate limit is Weft's own sliding window (a
 * start log per queue on Redis's clock, see KeyLimiter): BullMQ's limiter
 * counts in fixed windows, which lets twice the limit through in some
 * one-second spans. Both live in Redis, so every replica enforces them.
 */
export class QueueAdmin {
  private readonly limitCache = new Map<string, { limit: Limit | undefined; until: number }>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly queues: TaskQueues,
    private readonly logger: Logger,
  ) {}

  /** Applies the configuration file's queue limits (at startup). */
  async apply(policy: Policy): Promise<void> {
    for (const [name, q] of policy.queues) {
      await this.update(name, {
        rateLimit: q.rateLimit ?? null,
        concurrency: q.concurrency ?? 0,
        paused: q.paused,
      });
      this.logger.info({ queue: name, ...q }, "queue limits applied");
    }
  }

  /** Remembers a queue name for ListQueues. */
  async remember(name: string): Promise<void> {
    await this.redis.zadd(this.keys.queueIndex(), "NX", 0, name);
  }

  /** One queue with its counts and limits; NOT_FOUND when weftd never saw it. */
  async get(name: string): Promise<Queue> {
    if ((await this.redis.zscore(this.keys.queueIndex(), name)) === null) {
      throw new ConnectError(`queue "${name}" not found`, Code.NotFound);
    }
    return this.describe(name);
  }

  /** One page of queues ordered by name, after `after`. */
  async list(pageSize: number, after: string): Promise<{ queues: Queue[]; next: string }> {
    const names = await this.redis.zrangebylex(
      this.keys.queueIndex(),
      after === "" ? "-" : `(${after}`,
      "+",
      "LIMIT",
      0,
      pageSize + 1,
    );
    const page = names.slice(0, pageSize);
    const queues = await Promise.all(page.map((name) => this.describe(name)));
    return { queues, next: names.length > pageSize ? (page[page.length - 1] ?? "") : "" };
  }

  /** Changes limits and pause state, then returns the queue. */
  async update(name: string, change: QueueUpdate): Promise<Queue> {
    const queue = this.queues.queue(name);
    await this.remember(name);
    if (change.rateLimit === null) await this.redis.hdel(this.keys.queueLimits(), name);
    else if (change.rateLimit !== undefined) {
      await this.redis.hset(
        this.keys.queueLimits(),
        name,
        `${change.rateLimit.max}/${change.rateLimit.perMs}`,
      );
    }
    this.limitCache.delete(name);
    if (change.concurrency === 0) await queue.removeGlobalConcurrency();
    else if (change.concurrency !== undefined) await queue.setGlobalConcurrency(change.concurrency);
    if (change.paused === true) await queue.pause();
    else if (change.paused === false) await queue.resume();
    return this.describe(name);
  }

  /**
   * The rate limit of a queue, read from Redis at most once a second per
   * replica: a change through UpdateQueue holds everywhere within a second.
   */
  async rateLimitOf(name: string): Promise<Limit | undefined> {
    const cached = this.limitCache.get(name);
    if (cached !== undefined && cached.until > Date.now()) return cached.limit;
    const raw = await this.redis.hget(this.keys.queueLimits(), name);
    const [max, perMs] = (raw ?? "").split("/").map(Number);
    const limit = raw === null || max === undefined || perMs === undefined ? undefined : { max, perMs };
    this.limitCache.set(name, { limit, until: Date.now() + 1000 });
    return limit;
  }

  /** Why tasks of a queue may not start now, or "" when nothing holds them back. */
  async holdReason(name: string): Promise<string> {
    const queue = this.queues.queue(name);
    if (await queue.isPaused()) return `queue "${name}" is paused`;
    const limit = await this.rateLimitOf(name);
    if (limit !== undefined) {
      const recent = await this.redis.zcount(
        `${this.keys.prefix}:qrl:{${name}}`,
        Date.now() - limit.perMs,
        "+inf",
      );
      if (recent >= limit.max)
        return `queue "${name}" is at its rate limit of ${limit.max} per ${limit.perMs} ms`;
    }
    const concurrency = await queue.getGlobalConcurrency();
    if (concurrency !== null && (await queue.getActiveCount()) >= concurrency) {
      return `queue "${name}" is at its concurrency limit of ${concurrency}`;
    }
    return "";
  }

  private async describe(name: string): Promise<Queue> {
    const queue = this.queues.queue(name);
    const [counts, paused, limit, concurrency] = await Promise.all([
      queue.getJobCounts("waiting", "prioritized", "active", "delayed", "failed", "completed"),
      queue.isPaused(),
      this.redis.hget(this.keys.queueLimits(), name),
      queue.getGlobalConcurrency(),
    ]);
    const [max = 0, perMs = 0] = (limit ?? "").split("/").map(Number);
    return create(QueueSchema, {
      name,
      waiting: BigInt((counts.waiting ?? 0) + (counts.prioritized ?? 0)),
      active: BigInt(counts.active ?? 0),
      delayed: BigInt(counts.delayed ?? 0),
      failed: BigInt(counts.failed ?? 0),
      completed: BigInt(counts.completed ?? 0),
      paused,
      rateLimit:
        limit === null ? undefined : create(RateLimitSchema, { max, duration: durationFromMs(perMs) }),
      concurrency: concurrency ?? 0,
    });
  }
}
