import type { Logger } from "pino";
import { afterResponsiveTime, EventLoopWatch } from "../observability/event-loop.js";
import { logThrottle, type OutageSink } from "../observability/log-throttle.js";
import type { HealthReporter } from "../server/health.js";
import { isCluster, onRedisUnavailable, type RedisClient, redisTrouble } from "./redis.js";

const UNREACHABLE = "redis unreachable: calls fail UNAVAILABLE and health is NOT_SERVING until it is back";
const REFUSED = "redis could not serve a command: the call failed UNAVAILABLE";

/** Outages within {@link FLAP_WINDOW_MS} logged one by one; more are counted (see LogThrottle). */
const FLAP_LIMIT = 3;
const FLAP_WINDOW_MS = 60_000;

/** Options of {@link RedisMonitor}. */
export interface RedisMonitorOptions {
  /**
   * How often a PING checks that Redis still answers while it is up.
   * @defaultValue 2000
   */
  pingIntervalMs?: number;
  /**
   * How long a PING may go unanswered before Redis counts as down, not counting the time weftd's
   * own event loop was blocked.
   * @defaultValue 2000
   */
  pingTimeoutMs?: number;
  /**
   * How often a PING asks whether Redis is back while it is down and the connection is open.
   * @defaultValue 250
   */
  downPingIntervalMs?: number;
  /**
   * While Redis stays down, a line says so this often, with what its outage kept out of the log.
   * @defaultValue 60000
   */
  stillDownLogEveryMs?: number;
  /**
   * For this long after Redis is back, a call failing with a connection error only makes the
   * monitor PING, and Redis counts as down if that PING fails: the other connections (BullMQ's,
   * the subscribers') reconnect one by one, and one that is not back yet still fails the commands
   * it was sent during the outage, though Redis answers.
   * @defaultValue 5000
   */
  recoveryGraceMs?: number;
  /**
   * Measures how long weftd's event loop was blocked.
   * @defaultValue a watch of its own, stopped with the monitor
   */
  loop?: EventLoopWatch;
}

/**
 * Follows whether Redis is reachable and reports it as the health component "redis". Redis is down
 * once the client's connection closes, once a command fails with a connection error (any call
 * failing UNAVAILABLE through `redisErrorToConnect`, or an error a loop logs through the daemon's
 * {@link logThrottle}), or once a PING goes unanswered for `pingTimeoutMs` of time in which weftd's
 * event loop was responsive: a slow loop is not a slow Redis. Redis is back as soon as the client
 * is ready again or a PING succeeds. One line is logged when Redis goes down and one when it is
 * back; the errors logged meanwhile through the throttle are counted, and the counts go with the
 * second line.
 */
export class RedisMonitor implements OutageSink {
  /** The event-loop watch in use (for the metrics). */
  readonly loop: EventLoopWatch;
  private up: boolean | undefined;
  /** Why Redis went down, and the latest connection error since. */
  private reason: string | undefined;
  private lastError: string | undefined;
  private downSince = 0;
  private upSince = 0;
  private lastDownLog = 0;
  private lastPingAt = 0;
  private pinging = false;
  private readonly suppressed = new Map<string, number>();
  /** When Redis went down within the last {@link FLAP_WINDOW_MS}. */
  private readonly recentDowns: number[] = [];
  private readonly timer: NodeJS.Timeout;
  private readonly stopListening: () => void;
  private readonly ownsLoop: boolean;
  private readonly pingIntervalMs: number;
  private readonly pingTimeoutMs: number;
  private readonly stillDownLogEveryMs: number;
  private readonly recoveryGraceMs: number;

  constructor(
    private readonly redis: RedisClient,
    private readonly target: string,
    private readonly health: HealthReporter,
    private readonly logger: Logger,
    options: RedisMonitorOptions = {},
  ) {
    this.pingIntervalMs = options.pingIntervalMs ?? 2000;
    this.pingTimeoutMs = options.pingTimeoutMs ?? 2000;
    this.stillDownLogEveryMs = options.stillDownLogEveryMs ?? 60_000;
    this.recoveryGraceMs = options.recoveryGraceMs ?? 5000;
    this.ownsLoop = options.loop === undefined;
    this.loop =
      options.loop ??
      new EventLoopWatch({
        onStall: (ms) =>
          logThrottle(logger).warn(
            { ms },
            "event loop blocked: weftd could not run for a while (busy CPU, long GC pause, process stopped)",
          ),
      });
    health.setComponent("redis", redis.status === "ready");
    redis.on("ready", this.onReady);
    redis.on("close", this.onClose);
    redis.on("end", this.onClose);
    redis.on("error", this.onError);
    this.stopListening = onRedisUnavailable((err, trouble) => this.commandFailed(err, trouble));
    logThrottle(logger).setOutageSink(this);
    this.timer = setInterval(() => this.tick(), options.downPingIntervalMs ?? 250);
    this.timer.unref();
  }

  /** Whether Redis answered last time we looked. */
  get reachable(): boolean {
    return this.up === true;
  }

  /**
   * A command failed: with a connection error (or a Cluster that is down) Redis counts as down at
   * once, except within `recoveryGraceMs` of its coming back, when a PING decides; another
   * refusal (slots moving, a cross-slot command, out of memory) is logged in full, as the caller
   * only hears UNAVAILABLE.
   */
  commandFailed(err: unknown, trouble = redisTrouble(err)): void {
    if (trouble === undefined) return;
    if (trouble !== "unreachable") {
      logThrottle(this.logger).warn({ err, redis: this.target, trouble }, REFUSED);
    } else if (this.recovering()) {
      this.lastError = (err as Error).message;
      void this.ping();
    } else {
      this.setDown((err as Error).message);
    }
  }

  /**
   * Takes a line that a Redis outage explains. Within `recoveryGraceMs` of Redis coming back, such
   * a line is the outage's tail (a connection that is not back yet): it is dropped, and a PING
   * decides whether Redis is down again.
   */
  absorb(err: unknown, msg: string): boolean {
    if (redisTrouble(err) !== "unreachable") return false;
    const tail = this.recovering();
    this.commandFailed(err, "unreachable");
    if (!tail) this.suppressed.set(msg, (this.suppressed.get(msg) ?? 0) + 1);
    return true;
  }

  /** Stops watching; the client's events are no longer followed. */
  stop(): void {
    clearInterval(this.timer);
    this.stopListening();
    this.redis.off("ready", this.onReady);
    this.redis.off("close", this.onClose);
    this.redis.off("end", this.onClose);
    // The error listener stays: an EventEmitter without one throws.
    const throttle = logThrottle(this.logger);
    throttle.setOutageSink(undefined);
    if (this.ownsLoop) this.loop.stop();
  }

  private readonly onReady = () => this.setUp();
  private readonly onClose = () => this.setDown("connection closed");
  private readonly onError = (err: Error) => {
    this.lastError = err.message;
    this.logger.debug({ err, redis: this.target }, "redis connection error");
  };

  private tick(): void {
    const now = Date.now();
    if (this.up === false) {
      if (now - this.lastDownLog >= this.stillDownLogEveryMs) {
        this.lastDownLog = now;
        this.logger.warn(
          {
            redis: this.target,
            reason: this.reason,
            lastError: this.lastError,
            downMs: now - this.downSince,
            ...this.takeSuppressed(),
          },
          "redis still unreachable",
        );
      }
      void this.ping();
    } else if (now - this.lastPingAt >= this.pingIntervalMs) {
      void this.ping();
    }
  }

  private async ping(): Promise<void> {
    if (this.pinging || this.redis.status !== "ready") return;
    this.pinging = true;
    this.lastPingAt = Date.now();
    const cancel = afterResponsiveTime(this.loop, this.pingTimeoutMs, (wallMs, blockedMs) =>
      this.setDown(
        `PING unanswered for ${wallMs - blockedMs} ms` +
          (blockedMs > 0 ? ` (plus ${blockedMs} ms in which weftd's event loop was blocked)` : ""),
      ),
    );
    try {
      // A late answer still counts: Redis is back when it comes. A Cluster is up when every master
      // answers: one that does not serves slots whose calls fail.
      const { redis } = this;
      if (isCluster(redis)) await Promise.all(redis.nodes("master").map((node) => node.ping()));
      else await redis.ping();
      this.setUp();
    } catch (err) {
      this.setDown((err as Error).message);
    } finally {
      cancel();
      this.pinging = false;
    }
  }

  private setUp(): void {
    if (this.up === true) return;
    const first = this.up === undefined;
    this.up = true;
    this.upSince = Date.now();
    this.health.setComponent("redis", true);
    if (first) {
      this.logger.info({ redis: this.target }, "redis connected");
    } else {
      const fields = { redis: this.target, downMs: Date.now() - this.downSince, ...this.takeSuppressed() };
      if (this.flapping()) logThrottle(this.logger).info(fields, "redis reachable again");
      else this.logger.info(fields, "redis reachable again");
    }
    this.reason = undefined;
    this.lastError = undefined;
  }

  private setDown(reason: string): void {
    if (this.up === false) return;
    this.up = false;
    this.reason = reason;
    this.downSince = Date.now();
    this.lastDownLog = this.downSince;
    this.health.setComponent("redis", false);
    this.recentDowns.push(this.downSince);
    const fields = { redis: this.target, reason: this.reason };
    // Calls that keep failing while PINGs succeed (a replica that refuses writes) make health flap:
    // past a few times a minute, the transitions are counted rather than logged each.
    if (this.flapping()) logThrottle(this.logger).warn(fields, UNREACHABLE);
    else this.logger.warn(fields, UNREACHABLE);
    // The connection may still be open (a failed command, a late PING): ask at once whether Redis
    // answers, rather than at the next tick.
    void this.ping();
  }

  /** Whether Redis came back from an outage less than `recoveryGraceMs` ago. */
  private recovering(): boolean {
    return this.up === true && this.downSince > 0 && Date.now() - this.upSince < this.recoveryGraceMs;
  }

  /** Whether Redis went down more than {@link FLAP_LIMIT} times in the last {@link FLAP_WINDOW_MS}. */
  private flapping(): boolean {
    const since = Date.now() - FLAP_WINDOW_MS;
    while ((this.recentDowns[0] ?? since) < since) this.recentDowns.shift();
    return this.recentDowns.length > FLAP_LIMIT;
  }

  /** `{ suppressed: { msg: count } }` for what the outage kept out of the log so far, or nothing. */
  private takeSuppressed(): { suppressed?: Record<string, number> } {
    if (this.suppressed.size === 0) return {};
    const suppressed = Object.fromEntries(this.suppressed);
    this.suppressed.clear();
    return { suppressed };
  }
}
