import type { ConnectionOptions } from "node:tls";
import type { Interceptor } from "@connectrpc/connect";

/** Wire protocols weftd serves on its one port. */
export type WeftProtocol = "grpc" | "connect" | "grpc-web";

/** TLS settings: a private CA, a client certificate for mTLS, a server name to check. */
export type TlsOptions = Pick<
  ConnectionOptions,
  "ca" | "cert" | "key" | "pfx" | "passphrase" | "servername" | "rejectUnauthorized"
>;

/** How {@link WeftClient.watch} reconnects after a dropped stream. */
export interface ReconnectOptions {
  /**
   * Consecutive failed reconnections before `watch` gives up with the last error. A delivered
   * event resets the count.
   * @defaultValue 10
   */
  maxAttempts?: number;
  /**
   * Delay before the first reconnection; doubled after each failure.
   * @defaultValue 100
   */
  initialDelayMs?: number;
  /**
   * Cap on the delay between two reconnections.
   * @defaultValue 5000
   */
  maxDelayMs?: number;
}

/** How {@link WeftClientOptions.batchTriggers} groups concurrent `trigger()` calls. */
export interface TriggerBatchOptions {
  /**
   * How long the first call of a batch waits for others, in ms (at most 1,000); 0 waits until the
   * event loop's next turn, which groups the calls made together without delaying a lone one.
   * @defaultValue 0
   */
  windowMs?: number;
  /**
   * Most calls in one batch, 1 to 1,000 (BatchTrigger's limit); a full batch goes at once.
   * @defaultValue 1000
   */
  maxSize?: number;
}

/** Options of {@link createWeftClient}. */
export interface WeftClientOptions {
  /** `host:port` (plain-text HTTP/2), or a URL such as `https://weft.internal:7233`. */
  address: string;
  /** Bearer token sent as `authorization: Bearer <token>` with every call. */
  token?: string;
  /**
   * TLS: `true` to use https with the system's CAs, or {@link TlsOptions} (for example
   * `{ ca, cert, key }` for a private CA or mTLS). A `https://` address implies TLS.
   * @defaultValue false
   */
  tls?: boolean | TlsOptions;
  /**
   * Deadline of each unary call, in milliseconds. `watch` streams have none.
   * @defaultValue 30000
   */
  timeoutMs?: number;
  /**
   * Wire protocol.
   * @defaultValue "grpc"
   */
  protocol?: WeftProtocol;
  /**
   * HTTP version for the Connect and gRPC-Web protocols (gRPC always uses HTTP/2).
   * @defaultValue "2"
   */
  httpVersion?: "1.1" | "2";
  /** Reconnection policy of `watch` and `result`. */
  reconnect?: ReconnectOptions;
  /**
   * Concurrent `trigger()` calls go to weftd together, as BatchTrigger calls, each keeping its own
   * result, error and idempotency key (a bad request among good ones fails alone). `true` groups
   * the calls made before the event loop's next turn, up to 1,000 per batch; `false` sends each as
   * its own Trigger call.
   * @defaultValue true
   */
  batchTriggers?: boolean | TriggerBatchOptions;
  /**
   * Wait for runs (`result`) and watch them (`watch`) on one WatchRuns stream per client, opened
   * when the first wait begins and closed a second after the last one ends. `false` opens a
   * WatchRun stream per `watch` and per `result` instead (as weftd versions without WatchRuns
   * need; the client also falls back by itself when weftd answers UNIMPLEMENTED). Only gRPC and
   * Connect over HTTP/2 carry the shared stream; gRPC-Web and HTTP/1.1 always use WatchRun.
   * @defaultValue true
   */
  sharedWatch?: boolean;
  /**
   * Extra interceptors, run after the one that adds the token.
   * @defaultValue []
   */
  interceptors?: Interceptor[];
}

/** {@link WeftClientOptions} with every default applied. */
export interface ResolvedClientOptions {
  baseUrl: string;
  token: string | undefined;
  tls: TlsOptions | undefined;
  timeoutMs: number;
  protocol: WeftProtocol;
  httpVersion: "1.1" | "2";
  reconnect: Required<ReconnectOptions>;
  interceptors: Interceptor[];
  /** Whether result() and watch() share one WatchRuns stream (never over gRPC-Web or HTTP/1.1). */
  sharedWatch: boolean;
  /** How trigger() calls are grouped; undefined: each is its own Trigger call. */
  triggerBatch: Required<TriggerBatchOptions> | undefined;
}

/** Applies the defaults of {@link WeftClientOptions} (the one place they live). */
export function addDefaults(options: WeftClientOptions): ResolvedClientOptions {
  const tls = options.tls ?? false;
  const protocol = options.protocol ?? "grpc";
  const httpVersion = options.httpVersion ?? "2";
  // Bidirectional streams need HTTP/2, and gRPC-Web has none.
  const bidi = protocol === "grpc" || (protocol === "connect" && httpVersion === "2");
  return {
    sharedWatch: bidi && options.sharedWatch !== false,
    triggerBatch: triggerBatchOf(options.batchTriggers ?? true),
    baseUrl: toBaseUrl(options.address, tls !== false),
    token: options.token === "" ? undefined : options.token,
    tls: typeof tls === "object" ? tls : undefined,
    timeoutMs: options.timeoutMs ?? 30_000,
    protocol,
    httpVersion,
    reconnect: {
      maxAttempts: options.reconnect?.maxAttempts ?? 10,
      initialDelayMs: options.reconnect?.initialDelayMs ?? 100,
      maxDelayMs: options.reconnect?.maxDelayMs ?? 5000,
    },
    interceptors: options.interceptors ?? [],
  };
}

/** `host:port` → `http://host:port` (or https with TLS); a URL is kept as it is. */
export function toBaseUrl(address: string, tls: boolean): string {
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(address)) return address.replace(/\/+$/, "");
  return `${tls ? "https" : "http"}://${address}`;
}

/** {@link WeftClientOptions.batchTriggers} with its defaults, checked. */
function triggerBatchOf(option: boolean | TriggerBatchOptions): Required<TriggerBatchOptions> | undefined {
  if (option === false) return undefined;
  const { windowMs = 0, maxSize = 1000 } = option === true ? {} : option;
  if (!(windowMs >= 0 && windowMs <= 1000)) {
    throw new TypeError(`batchTriggers.windowMs must be 0 to 1000 ms, got ${windowMs}`);
  }
  if (!(Number.isInteger(maxSize) && maxSize >= 1 && maxSize <= 1000)) {
    throw new TypeError(`batchTriggers.maxSize must be an integer from 1 to 1000, got ${maxSize}`);
  }
  return { windowMs, maxSize };
}
