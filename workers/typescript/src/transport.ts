import type { SecureClientSessionOptions } from "node:http2";
import type { Interceptor, Transport } from "@connectrpc/connect";
import { createConnectTransport, createGrpcTransport } from "@connectrpc/connect-node";

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

/** Creates the transport a {@link Worker} uses: gRPC over HTTP/2 unless told otherwise. */
export function createWorkerTransport(options: WorkerTransportOptions): Transport {
  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) {
    interceptors.push(bearerToken(options.token));
  }
  interceptors.push(...(options.interceptors ?? []));
  const common = {
    baseUrl: toBaseUrl(options.address),
    interceptors,
    ...(options.nodeOptions === undefined ? {} : { nodeOptions: options.nodeOptions }),
  };
  return options.protocol === "connect"
    ? createConnectTransport({ ...common, httpVersion: "2" })
    : createGrpcTransport(common);
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
