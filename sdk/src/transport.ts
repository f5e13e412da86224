import type { Interceptor, Transport } from "@connectrpc/connect";
import {
  createConnectTransport,
  createGrpcWebTransport,
  Http2SessionManager,
} from "@connectrpc/connect-node";
import { addDefaults, type ResolvedClientOptions, type WeftClientOptions } from "./client-options.js";
import { grpcUnaryTransport } from "./grpc-unary.js";

/** A transport and the HTTP/2 session it holds, if any, so that it can be closed. */
export interface ClientTransport {
  transport: Transport;
  /** Closes the HTTP/2 connection; later calls open a new one. */
  close(): void;
}

/**
 * The transport {@link createWeftClient} uses, for programs that call the generated service
 * clients (`createClient(WorkflowService, transport)`) directly: gRPC over HTTP/2 unless told
 * otherwise, with unary calls that skip Connect's per-call pipeline (see grpc-unary.ts).
 */
export function createWeftTransport(options: WeftClientOptions): ClientTransport {
  return createClientTransport(addDefaults(options));
}

/** Creates the transport of a client: gRPC over HTTP/2 unless told otherwise. */
export function createClientTransport(options: ResolvedClientOptions): ClientTransport {
  const interceptors: Interceptor[] = [];
  if (options.token !== undefined) interceptors.push(bearerToken(options.token));
  interceptors.push(...options.interceptors);
  const common = { baseUrl: options.baseUrl, interceptors };
  const http2 = options.protocol === "grpc" || options.httpVersion === "2";
  if (!http2) {
    const nodeOptions = options.tls === undefined ? {} : { nodeOptions: { ...options.tls } };
    const transport =
      options.protocol === "connect"
        ? createConnectTransport({ ...common, ...nodeOptions, httpVersion: "1.1" })
        : createGrpcWebTransport({ ...common, ...nodeOptions, httpVersion: "1.1" });
    return { transport, close: () => {} };
  }
  // PINGs on a busy connection notice a peer that vanished without closing it (a long watch
  // would otherwise wait forever on a dead host).
  const ping = { pingIntervalMs: 30_000, pingTimeoutMs: 15_000 };
  const sessionManager = new Http2SessionManager(options.baseUrl, ping, options.tls);
  const h2 = { ...common, httpVersion: "2" as const, sessionManager };
  const transport =
    options.protocol === "connect"
      ? createConnectTransport(h2)
      : options.protocol === "grpc-web"
        ? createGrpcWebTransport(h2)
        : grpcUnaryTransport({ baseUrl: options.baseUrl, sessionManager, interceptors });
  return { transport, close: () => sessionManager.abort() };
}

function bearerToken(token: string): Interceptor {
  return (next) => (req) => {
    req.header.set("authorization", `Bearer ${token}`);
    return next(req);
  };
}
