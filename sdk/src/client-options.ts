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
}

/** Applies the defaults of {@link WeftClientOptions} (the one place they live). */
export function addDefaults(options: WeftClientOptions): ResolvedClientOptions {
  const tls = options.tls ?? false;
  return {
    baseUrl: toBaseUrl(options.address, tls !== false),
    token: options.token === "" ? undefined : options.token,
    tls: typeof tls === "object" ? tls : undefined,
    timeoutMs: options.timeoutMs ?? 30_000,
    protocol: options.protocol ?? "grpc",
    httpVersion: options.httpVersion ?? "2",
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
