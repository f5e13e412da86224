import { Code, ConnectError, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { redisErrorToConnect } from "../redis/redis.js";
import { AbortFanOut } from "./abort-fanout.js";
import { callError } from "./call-errors.js";

/** The error new calls get, and open streams end with, once shutdown has begun. */
export function shuttingDownError(): ConnectError {
  return new ConnectError("weftd is shutting down, retry on another replica", Code.Unavailable);
}

/**
 * Wraps every call the server runs: refuses new calls once `shuttingDown` is aborted, ends open
 * server streams with UNAVAILABLE at that moment, counts calls in flight so that shutdown can wait
 * for unary ones, and turns handler errors into the right code once ({@link callError}: Redis
 * connection errors into UNAVAILABLE, anything unexpected into INTERNAL, logged with its cause).
 */
export class CallGuard {
  private unaryCalls = 0;
  private streams = 0;
  private readonly idleWaiters = new Set<() => void>();
  /** The open streams wait for shutdown here, not with a listener each on the signal. */
  private readonly shutdownWaiters: AbortFanOut;

  constructor(
    private readonly shuttingDown: AbortSignal,
    private readonly logger: Logger,
    /** Procedures still served during shutdown, e.g. "/grpc.health.v1.Health/Check". */
    private readonly servedDuringShutdown: ReadonlySet<string> = new Set(),
  ) {
    this.shutdownWaiters = new AbortFanOut(shuttingDown);
  }

  /** Unary calls in flight. */
  get unaryInFlight(): number {
    return this.unaryCalls;
  }

  /** Streaming calls in flight. */
  get streamsInFlight(): number {
    return this.streams;
  }

  /**
   * Resolves once no unary call (or, with `includeStreams`, no call at all) is in flight, or after
   * `timeoutMs`; returns whether that point was reached.
   */
  async idle(timeoutMs: number, includeStreams = false): Promise<boolean> {
    const isIdle = () => this.unaryCalls === 0 && (!includeStreams || this.streams === 0);
    if (isIdle()) return true;
    return new Promise<boolean>((resolve) => {
      const check = () => {
        if (!isIdle()) return;
        finish(true);
      };
      const finish = (ok: boolean) => {
        clearTimeout(timer);
        this.idleWaiters.delete(check);
        resolve(ok);
      };
      const timer = setTimeout(() => finish(false), timeoutMs);
      this.idleWaiters.add(check);
    });
  }

  /**
   * Runs a unary call as the interceptor does: refused once shutdown has begun, counted while in
   * flight, its error turned into the right code. For calls answered without Connect.
   */
  async unary<T>(procedure: string, signal: AbortSignal, run: () => Promise<T>): Promise<T> {
    this.refuseDuringShutdown(procedure);
    const started = performance.now();
    this.unaryCalls++;
    try {
      return await run();
    } catch (err) {
      throw this.normalize(err, procedure, signal);
    } finally {
      this.unaryCalls--;
      this.logger.debug({ procedure, ms: Math.round(performance.now() - started) }, "unary call done");
      this.notify();
    }
  }

  /**
   * Opens a server stream answered without Connect, as the interceptor does for Connect's: refused
   * once shutdown has begun, counted until the returned function is called (once is enough);
   * `onShutdown` runs when shutdown begins while it is open.
   */
  openStream(procedure: string, onShutdown: () => void): () => void {
    this.refuseDuringShutdown(procedure);
    this.streams++;
    const stop = this.shutdownWaiters.onAbort(onShutdown);
    let closed = false;
    return () => {
      if (closed) return;
      closed = true;
      stop();
      this.streams--;
      this.notify();
    };
  }

  /** The error a call answered without Connect ends with, as the interceptor turns it (see normalize). */
  callErrorOf(err: unknown, procedure: string, signal: AbortSignal): ConnectError {
    return this.normalize(err, procedure, signal);
  }

  readonly interceptor: Interceptor = (next) => async (req) => {
    const procedure = `/${req.service.typeName}/${req.method.name}`;
    if (!req.stream) return this.unary(procedure, req.signal, () => next(req));
    this.refuseDuringShutdown(procedure);
    this.streams++;
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      this.streams--;
      this.notify();
      throw this.normalize(err, procedure, req.signal);
    }
    if (!res.stream) return res;
    return { ...res, message: this.guardStream(res.message, procedure, req.signal) };
  };

  private async *guardStream<T>(
    source: AsyncIterable<T>,
    procedure: string,
    signal: AbortSignal,
  ): AsyncGenerator<T> {
    const it = source[Symbol.asyncIterator]();
    let finished = false;
    try {
      for (;;) {
        const result = await this.nextUnlessShutdown(it);
        if (result.done === true) {
          finished = true;
          return;
        }
        yield result.value;
      }
    } catch (err) {
      throw this.normalize(err, procedure, signal);
    } finally {
      // Let the handler run its cleanup; it also sees its context signal aborted once we are done.
      if (!finished)
        it.return?.().catch((err: unknown) => this.logger.debug({ err, procedure }, "stream cleanup failed"));
      this.streams--;
      this.notify();
    }
  }

  /**
   * The stream's next message, or UNAVAILABLE once shutdown begins. Each wait races a promise of its
   * own: a race against one promise that lives as long as the stream would keep a reaction — and
   * with it every message — per message it ever sent (a long Work stream sends thousands).
   */
  private async nextUnlessShutdown<T>(it: AsyncIterator<T>): Promise<IteratorResult<T>> {
    if (this.shuttingDown.aborted) throw shuttingDownError();
    let stopWaiting = () => {};
    const stopped = new Promise<never>((_, reject) => {
      stopWaiting = this.shutdownWaiters.onAbort(() => reject(shuttingDownError()));
    });
    // The race may never observe `stopped`; keep its rejection from being "unhandled".
    stopped.catch(() => {});
    try {
      return await Promise.race([it.next(), stopped]);
    } finally {
      stopWaiting();
    }
  }

  /** New calls get UNAVAILABLE once shutdown has begun, except those still served then. */
  private refuseDuringShutdown(procedure: string): void {
    if (this.shuttingDown.aborted && !this.servedDuringShutdown.has(procedure)) throw shuttingDownError();
  }

  private normalize(err: unknown, procedure: string, signal: AbortSignal): ConnectError {
    const mapped = redisErrorToConnect(err);
    if (signal.aborted && !(mapped instanceof ConnectError)) {
      // Cancelled by the client, past its deadline, or cut off at the end of the shutdown grace.
      return signal.reason instanceof ConnectError ? signal.reason : ConnectError.from(err, Code.Canceled);
    }
    return callError(mapped, this.logger, { procedure });
  }

  private notify(): void {
    for (const check of [...this.idleWaiters]) check();
  }
}
