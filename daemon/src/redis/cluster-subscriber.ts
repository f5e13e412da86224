import { type Cluster, Redis, type RedisOptions } from "ioredis";
import type { Logger } from "pino";
import type { ChannelSubscriber } from "./channel-subscriber.js";
import { reconnectDelay } from "./redis.js";
import { keySlot } from "./slots.js";

/** A channel followed across a Cluster: its slot, and the node connection holding it. */
interface Followed {
  slot: number;
  node: NodeSubscriber | undefined;
  /** Resolves the subscribe() calls waiting for a first confirmation. */
  confirmed: () => void;
  /** Settles once a node confirmed the subscription. */
  ready: Promise<void>;
  /** A node confirmed it once: later confirmations are resubscriptions. */
  held: boolean;
}

/**
 * Sharded pub/sub on a Redis Cluster (Redis 7: SSUBSCRIBE, SPUBLISH): a message published on a
 * channel stays on the nodes of the channel's slot instead of going to every node. Each channel is
 * subscribed on the master that serves its slot, through one connection per master; the slot table
 * is the Cluster client's, followed on each of its refreshes (every `slotsRefreshInterval`, after
 * errors, and when a node connection drops). A channel whose slot moved (a failover, a resharding)
 * is subscribed on its new master, and the listeners hear it once it is; so do those of a node
 * connection that reconnected.
 */
export class ClusterSubscriber implements ChannelSubscriber {
  private readonly channels = new Map<string, Followed>();
  private readonly nodes = new Map<string, NodeSubscriber>();
  private readonly messages = new Set<(channel: string, message: string) => void>();
  private readonly resubscribed = new Set<(channels: string[] | "all") => void>();
  private closed = false;
  private refreshTimer: NodeJS.Timeout | undefined;

  constructor(
    private readonly cluster: Cluster,
    /** Connection options of a node (TLS, credentials, connection name). */
    private readonly nodeOptions: RedisOptions,
    private readonly logger: Logger,
  ) {
    cluster.on("refresh", () => this.follow());
    cluster.on("ready", () => this.follow());
  }

  subscribe(channel: string): Promise<void> {
    let followed = this.channels.get(channel);
    if (followed === undefined) {
      let confirmed = () => {};
      const ready = new Promise<void>((resolve) => {
        confirmed = resolve;
      });
      followed = { slot: keySlot(channel), node: undefined, confirmed, ready, held: false };
      this.channels.set(channel, followed);
      this.place(channel, followed);
    }
    return followed.ready;
  }

  unsubscribe(channel: string): void {
    const followed = this.channels.get(channel);
    if (followed === undefined) return;
    this.channels.delete(channel);
    followed.node?.remove(channel);
    // A subscribe() still waiting ends: nobody follows the channel any more.
    followed.confirmed();
  }

  onMessage(listener: (channel: string, message: string) => void): void {
    this.messages.add(listener);
  }

  onResubscribed(listener: (channels: string[] | "all") => void): void {
    this.resubscribed.add(listener);
  }

  close(): void {
    this.closed = true;
    clearTimeout(this.refreshTimer);
    for (const node of this.nodes.values()) node.close();
    this.nodes.clear();
    for (const followed of this.channels.values()) followed.confirmed();
    this.channels.clear();
  }

  /** Puts a channel on the node serving its slot, when the slot table knows it. */
  private place(channel: string, followed: Followed): void {
    const owner = this.cluster.slots[followed.slot]?.[0];
    if (owner === undefined) {
      // No slot table yet (the Cluster client is connecting): the next refresh places it.
      this.refreshSoon();
      return;
    }
    if (followed.node?.key === owner) return;
    followed.node?.remove(channel);
    const node = this.nodeFor(owner);
    followed.node = node;
    node.add(channel, followed.slot);
  }

  /** Follows the slot table: each channel on the master that serves its slot now. */
  private follow(): void {
    if (this.closed) return;
    for (const [channel, followed] of this.channels) this.place(channel, followed);
    // Connections to nodes that hold no channel now (a master that failed, or lost its slots) close;
    // the others send again what they refused while the slot table was stale.
    for (const [key, node] of this.nodes) {
      if (node.size === 0) {
        node.close();
        this.nodes.delete(key);
      } else node.retry();
    }
  }

  private nodeFor(key: string): NodeSubscriber {
    let node = this.nodes.get(key);
    if (node === undefined) {
      node = new NodeSubscriber(key, this.nodeOptions, this.logger, {
        message: (channel, message) => {
          for (const listener of this.messages) listener(channel, message);
        },
        confirmed: (channels) => this.confirmed(channels),
        lost: () => this.refreshSoon(),
        moved: () => this.refreshSoon(),
      });
      this.nodes.set(key, node);
    }
    return node;
  }

  /** A node confirmed subscriptions: first ones resolve their subscribe(), the others may have missed messages. */
  private confirmed(channels: string[]): void {
    const again: string[] = [];
    for (const channel of channels) {
      const followed = this.channels.get(channel);
      if (followed === undefined) continue;
      if (followed.held) again.push(channel);
      followed.held = true;
      followed.confirmed();
    }
    if (again.length > 0) for (const listener of this.resubscribed) listener(again);
  }

  /** Asks the Cluster client for its slot table again, at most every 200 ms. */
  private refreshSoon(): void {
    if (this.closed || this.refreshTimer !== undefined) return;
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      this.cluster.refreshSlotsCache();
    }, 200);
    this.refreshTimer.unref();
  }
}

/** What a node connection tells the Cluster subscriber. */
interface NodeEvents {
  message(channel: string, message: string): void;
  /** Channels the node confirmed (first subscriptions, or again after a reconnection). */
  confirmed(channels: string[]): void;
  /** The connection dropped: the slot table may have changed. */
  lost(): void;
  /** The node refused a subscription (MOVED): the slot table is stale. */
  moved(): void;
}

/**
 * The subscriber connection to one master: SSUBSCRIBE for the channels of its slots (one command
 * per slot, as Redis requires), again after each reconnection, which it attempts forever with a
 * capped backoff until closed.
 */
class NodeSubscriber {
  private readonly channels = new Map<string, number>();
  /** Channels whose subscription the node refused (its slot moved): sent again by {@link retry}. */
  private readonly refused = new Set<string>();
  private readonly redis: Redis;

  constructor(
    readonly key: string,
    options: RedisOptions,
    private readonly logger: Logger,
    private readonly events: NodeEvents,
  ) {
    const colon = key.lastIndexOf(":");
    this.redis = new Redis({
      ...options,
      host: key.slice(0, colon),
      port: Number(key.slice(colon + 1)),
      retryStrategy: reconnectDelay,
      maxRetriesPerRequest: null,
      // Subscriptions are made again here, by slot, so that each one's confirmation is seen; a
      // subscription cut by a dropped connection is not sent twice.
      autoResubscribe: false,
      autoResendUnfulfilledCommands: false,
      enableReadyCheck: false,
    });
    let connectedOnce = false;
    this.redis.on("error", (err: Error) => logger.debug({ err, node: key }, "subscriber connection error"));
    this.redis.on("close", () => this.events.lost());
    this.redis.on("ready", () => {
      // After a reconnection every channel is subscribed again; the first time, add() does it.
      if (connectedOnce) this.subscribeAll();
      connectedOnce = true;
    });
    this.redis.on("smessage", (channel: string, message: string) => this.events.message(channel, message));
  }

  get size(): number {
    return this.channels.size;
  }

  add(channel: string, slot: number): void {
    this.channels.set(channel, slot);
    this.send([channel]);
  }

  remove(channel: string): void {
    if (!this.channels.delete(channel)) return;
    if (this.redis.status !== "ready") return;
    this.redis.sunsubscribe(channel).catch((err: unknown) => {
      this.logger.debug({ err, channel, node: this.key }, "sunsubscribe failed");
    });
  }

  close(): void {
    this.channels.clear();
    this.refused.clear();
    this.redis.disconnect();
  }

  /** Sends again the subscriptions the node refused, once the slot table says it serves them. */
  retry(): void {
    if (this.refused.size === 0 || this.redis.status !== "ready") return;
    const channels = [...this.refused].filter((c) => this.channels.has(c));
    this.refused.clear();
    this.subscribe(channels);
  }

  private subscribeAll(): void {
    this.refused.clear();
    this.subscribe([...this.channels.keys()]);
  }

  /** SSUBSCRIBE to channels, one command per slot. */
  private subscribe(channels: string[]): void {
    const bySlot = new Map<number, string[]>();
    for (const channel of channels) {
      const slot = this.channels.get(channel);
      if (slot === undefined) continue;
      const list = bySlot.get(slot);
      if (list === undefined) bySlot.set(slot, [channel]);
      else list.push(channel);
    }
    for (const list of bySlot.values()) this.send(list);
  }

  /** SSUBSCRIBE to channels of one slot; confirmed to the Cluster subscriber once Redis answers. */
  private send(channels: string[]): void {
    this.redis.ssubscribe(...channels).then(
      () => {
        const still = channels.filter((c) => this.channels.has(c));
        if (still.length > 0) this.events.confirmed(still);
      },
      (err: Error) => {
        if (/^(MOVED|ASK|CLUSTERDOWN|TRYAGAIN)\b/.test(err.message)) {
          for (const c of channels) if (this.channels.has(c)) this.refused.add(c);
          this.events.moved();
        }
        // A connection that dropped subscribes them all again once it is back.
        this.logger.debug({ err, node: this.key }, "ssubscribe failed");
      },
    );
  }
}
