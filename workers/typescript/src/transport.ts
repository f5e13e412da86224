import type { SecureClientSessionOptions } from "node:http2";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, Http2SessionManager } from "@connectrpc/connect-node";
import { grpcUnaryTransport } from "@weft/sdk";

/** How to reach the daemon's worker API. */
export interface WorkerTransportOptions {
  /** `host:port` (plain-text HTTP/2) or a URL such as `https://weft.internal:7233`. */
  address: string;
  /** Bearer token sent as `authorization: Bearer <token>` on every call. */
  token?: string;
  /**
   * Wire protocol, both over HTTP/2.
   * @defaultValue "grpc"
   */
  protocol?: "grpc" | "connect";
  /**
   * Extra interceptors, run after the one that adds the token.
   * @defaultValue []
   */
  interceptors?: Interceptor[];
  /** Options for `http2.connect()`, for example TLS certificates. */
  nodeOptions?: SecureClientSessionOptions;
}

/**
 * Creates the transport a {@link Worker} uses: gRPC over HTTP/2 unless told otherwise. Over gRPC,
 * unary calls (PollTask, CompleteTasks, Heartbeat…) take `@weft/sdk`'s direct path to the HTTP/2
 * session, and the Work stream Connect's gRPC transport, on the same connection.
 */
export function createWorkerTransport(options: WorkerTransportOptions): Transport {
  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) {
    interceptors.push(bearerToken(options.token));
  }
  interceptors.push(...(options.interceptors ?? []));
  const baseUrl = toBaseUrl(options.address);
  if (options.protocol === "connect") {
    return createConnectTransport({
      baseUrl,
      interceptors,
      httpVersion: "2",
      ...(options.nodeOptions === undefined ? {} : { nodeOptions: options.nodeOptions }),
    });
  }
  const sessionManager = new Http2SessionManager(baseUrl, undefined, options.nodeOptions);
  return grpcUnaryTransport({ baseUrl, sessionManager, interceptors });
}

/** Accepts `host:port` as well as a full URL. */
export function toBaseUrl(address: string): string {
  return /^[a-z][a-z0-9+.-]*:\/\//i.test(address) ? address : `http://${address}`;
}

function bearerToken(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}
