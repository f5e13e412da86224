import type { Http2Session } from "node:http2";
import type { Logger } from "pino";
import { afterResponsiveTime, type EventLoopWatch } from "../observability/event-loop.js";

/** Settings of the HTTP/2 keepalive weftd runs on every client connection. */
export interface KeepaliveOptions {
  /** A connection quiet for this long gets a PING. */
  intervalMs: number;
  /** A PING unanswered for this long closes the connection. */
  timeoutMs: number;
  /**
   * weftd's own event loop: the time it was blocked (a busy CPU, a GC pause) does not count
   * against a peer's answer, which may be sitting unread in the socket.
   */
  loop?: EventLoopWatch;
}

/**
 * How recently a connection must have shown life for a task to be handed to a poll on it without
 * a PING first.
 */
const FRESH_MS = 1000;

/** How long the PING before a hand-over may take; a peer slower than that gets no task this time. */
const HANDOVER_PING_MS = 1000;

/**
 * Whether the client at the other end of an HTTP/2 connection is alive: it opened a call, sent a
 * message or answered a PING recently. Long polls wait for minutes on connections that may have
 * died meanwhile (a cut link, a frozen or killed host: TCP does not tell); a task must not be
 * handed to such a poll, where it would sit until its heartbeat timeout.
 */
export class PeerLiveness {
  private lastSeen = Date.now();
  private outstanding: { sentAt: number; blockedAtSend: number; answered: Promise<boolean> } | undefined;
  private suspected = false;
  private closed = false;
  private readonly waiters = new Set<() => void>();

  constructor(
    private readonly session: Http2Session,
    private readonly loop?: EventLoopWatch,
  ) {
    session.once("close", () => {
      this.closed = true;
      this.wakeAll();
    });
  }

  /**
   * True once the peer failed to answer a PING in time, until it shows life again: its polls get
   * no task meanwhile.
   */
  get suspect(): boolean {
    return this.suspected || this.closed;
  }

  /** The peer showed life (a new call, a message on a stream, a PING answered). */
  touch(): void {
    this.lastSeen = Date.now();
    if (!this.suspected) return;
    this.suspected = false;
    this.wakeAll();
  }

  /** How long ago the peer last showed life, in ms. */
  get quietMs(): number {
    return Date.now() - this.lastSeen;
  }

  /**
   * Whether a task may be handed to a poll on this connection now: the peer showed life within
   * {@link FRESH_MS}, or answers a PING within {@link HANDOVER_PING_MS}. A peer that does not is
   * marked suspect.
   */
  async usable(): Promise<boolean> {
    if (this.closed) return false;
    if (this.suspected) {
      void this.ping(HANDOVER_PING_MS);
      return false;
    }
    if (this.quietMs <= FRESH_MS) return true;
    const alive = await this.ping(HANDOVER_PING_MS);
    if (!alive && !this.closed) this.suspected = true;
    return alive;
  }

  /** Resolves once the peer is not suspect (or the connection closed), or `signal` aborts. */
  whenAlive(signal: AbortSignal): Promise<void> {
    if (!this.suspect || signal.aborted) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.waiters.delete(done);
        signal.removeEventListener("abort", done);
        resolve();
      };
      this.waiters.add(done);
      signal.addEventListener("abort", done, { once: true });
    });
  }

  /** Resolves whether the peer answers a PING within `timeoutMs` (one PING is out at a time). */
  ping(timeoutMs: number): Promise<boolean> {
    const answer = this.sendPing();
    return new Promise((resolve) => {
      const cancel = this.after(timeoutMs, () => resolve(false));
      void answer.then((alive) => {
        cancel();
        resolve(alive);
      });
    });
  }

  /**
   * How long the PING still unanswered has been out, in ms of time weftd's event loop could run;
   * undefined when none is.
   */
  get unansweredMs(): number | undefined {
    const out = this.outstanding;
    if (out === undefined) return undefined;
    return Date.now() - out.sentAt - ((this.loop?.blockedMs() ?? 0) - out.blockedAtSend);
  }

  /** Calls `late` after `ms` of time weftd could run; returns the cancel function. */
  private after(ms: number, late: () => void): () => void {
    if (this.loop !== undefined) return afterResponsiveTime(this.loop, ms, late);
    const timer = setTimeout(late, ms);
    return () => clearTimeout(timer);
  }

  /** Sends a PING unless one is out; resolves true once answered, false when the connection fails. */
  sendPing(): Promise<boolean> {
    if (this.closed || this.session.destroyed) return Promise.resolve(false);
    if (this.outstanding !== undefined) return this.outstanding.answered;
    let sent = false;
    const answered = new Promise<boolean>((resolve) => {
      sent = this.session.ping((err) => {
        this.outstanding = undefined;
        if (err === null) this.touch();
        resolve(err === null);
      });
    });
    if (!sent) return Promise.resolve(false);
    this.outstanding = { sentAt: Date.now(), blockedAtSend: this.loop?.blockedMs() ?? 0, answered };
    return answered;
  }

  private wakeAll(): void {
    for (const wake of [...this.waiters]) wake();
  }
}

const peers = new WeakMap<Http2Session, PeerLiveness>();

/** The liveness of the client on `session`, once {@link keepAlive} follows it. */
export function peerOf(session: Http2Session | undefined): PeerLiveness | undefined {
  return session === undefined ? undefined : peers.get(session);
}

/**
 * Follows the liveness of a new client connection: every call it opens shows life, and when it has
 * been quiet for `intervalMs` it gets a PING; unanswered for `timeoutMs`, the connection is closed,
 * which ends its calls (and gives their work back).
 */
export function keepAlive(session: Http2Session, options: KeepaliveOptions, logger: Logger): PeerLiveness {
  const peer = new PeerLiveness(session, options.loop);
  peers.set(session, peer);
  session.on("stream", () => peer.touch());
  const timer = setInterval(
    () => {
      const unanswered = peer.unansweredMs;
      if (unanswered === undefined) {
        if (peer.quietMs >= options.intervalMs) void peer.sendPing();
        return;
      }
      if (unanswered <= options.timeoutMs || session.destroyed) return;
      // The answer may be in the socket, unread while the loop was busy: read first, then judge.
      setImmediate(() => {
        if ((peer.unansweredMs ?? 0) <= options.timeoutMs || session.destroyed) return;
        logger.info(
          { remote: session.socket?.remoteAddress, quietMs: peer.quietMs },
          "a client did not answer keepalive PINGs: closing its connection",
        );
        session.destroy();
      });
    },
    Math.max(50, Math.floor(Math.min(options.intervalMs, options.timeoutMs) / 4)),
  );
  timer.unref();
  session.once("close", () => clearInterval(timer));
  return peer;
}
