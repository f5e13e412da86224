import type { Logger } from "pino";
import { logThrottle } from "../observability/log-throttle.js";
import type { RedisClient } from "./redis.js";

/**
 * The pub/sub side of weftd: subscriptions to the channels run steps announce new events on, over
 * one server's connection or across the nodes of a Redis Cluster (sharded pub/sub).
 */
export interface ChannelSubscriber {
  /**
   * Subscribes to a channel; resolves once Redis confirmed the subscription: every message published
   * on it from then on arrives. While Redis is away it waits for it.
   */
  subscribe(channel: string): Promise<void>;
  /** Ends a subscription (errors are logged, never thrown). */
  unsubscribe(channel: string): void;
  /** Calls `listener` with each message. */
  onMessage(listener: (channel: string, message: string) => void): void;
  /**
   * Calls `listener` with the channels whose messages may have been missed (a connection that
   * dropped, a failover), once they are subscribed again: "all" for every channel.
   */
  onResubscribed(listener: (channels: string[] | "all") => void): void;
  /** Closes the subscriber's connections. */
  close(): void;
}

/**
 * Subscriptions on one server (standalone, or the primary Sentinels name) through one ioredis client
 * (created with `waitOutOutages`): ioredis subscribes again after a reconnection; once a PING sent
 * behind those subscriptions is answered, they hold, and the listeners hear "all". On a Cluster
 * client, classic pub/sub on one node of its choice (PUBLISH reaches every node).
 */
export class ServerSubscriber implements ChannelSubscriber {
  private readonly resubscribed = new Set<(channels: string[] | "all") => void>();

  constructor(
    private readonly redis: RedisClient,
    private readonly logger: Logger,
  ) {
    redis.on("ready", () => {
      redis.ping().then(
        () => {
          for (const listener of this.resubscribed) listener("all");
        },
        // The connection dropped again: its next "ready" tries again.
        () => {},
      );
    });
  }

  async subscribe(channel: string): Promise<void> {
    await this.redis.subscribe(channel);
  }

  unsubscribe(channel: string): void {
    this.redis.unsubscribe(channel).catch((err: unknown) => {
      logThrottle(this.logger).warn({ err, channel }, "unsubscribe failed");
    });
  }

  onMessage(listener: (channel: string, message: string) => void): void {
    this.redis.on("message", listener);
  }

  onResubscribed(listener: (channels: string[] | "all") => void): void {
    this.resubscribed.add(listener);
  }

  close(): void {
    this.redis.disconnect();
  }
}
