import { once } from "node:events";
import { readFileSync } from "node:fs";
import {
  createServer as createHttp1Server,
  type IncomingMessage,
  type OutgoingHttpHeaders,
  type ServerResponse,
} from "node:http";
import {
  createServer as createHttp2Server,
  createSecureServer,
  type Http2SecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type Http2Session,
} from "node:http2";
import { type AddressInfo, createServer as createNetServer, type Socket } from "node:net";
import type { Duplex } from "node:stream";
import type { SecureContextOptions } from "node:tls";
import type { ConnectRouter, Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";
import { formatAddress } from "../observability/metrics.js";
import { encodeGrpcMessage } from "./grpc-unary.js";
import { type KeepaliveOptions, keepAlive } from "./peer-liveness.js";
import { callContextValues } from "./response-stream.js";
import { createRpcHandler } from "./rpc-handler.js";

/** Options of {@link startApiServer}. */
export interface ApiServerOptions {
  /** Interface to listen on. */
  host: string;
  /** Port to listen on; 0 picks a free one. */
  port: number;
  /** Largest request message, after decompression; larger ones get RESOURCE_EXHAUSTED. */
  readMaxBytes: number;
  /** Registers every service. */
  routes: (router: ConnectRouter) => void;
  /** Applied to every call, first one outermost. */
  interceptors: Interceptor[];
  /** Answers the HTTP/2 calls it takes (returning true) before Connect sees them. */
  direct?: (req: Http2ServerRequest, res: Http2ServerResponse) => boolean;
  /** Aborting it aborts the context signal of every call still running (end of the shutdown grace). */
  shutdownSignal: AbortSignal;
  logger: Logger;
  /** TLS on the port (HTTP/2 and HTTP/1.1 chosen by ALPN); unset: cleartext. */
  tls?: TlsFiles;
  /** HTTP/2 keepalive of client connections (see peer-liveness.ts). */
  keepalive: KeepaliveOptions;
}

/** Certificate files of the API port. */
export interface TlsFiles {
  /** PEM certificate chain of the server. */
  certFile: string;
  /** PEM private key of the server. */
  keyFile: string;
  /** PEM CA bundle: when set, clients must present a certificate it signed (mTLS). */
  clientCaFile?: string;
}

/** The API port: gRPC, gRPC-Web and Connect over HTTP/2 cleartext and HTTP/1.1. */
export interface ApiServer {
  /** The port bound (useful with port 0). */
  readonly port: number;
  /** "host:port" bound. */
  readonly address: string;
  /**
   * Stops accepting connections and closes the open ones: HTTP/2 sessions get a GOAWAY and
   * HTTP/1.1 connections are ended; whatever is still open after `forceAfterMs` is destroyed.
   */
  close(forceAfterMs: number): Promise<void>;
  /** Reads the certificate files again (SIGHUP); new connections use them. */
  reloadTls(): void;
}

function secureContextOptions(files: TlsFiles): SecureContextOptions {
  return {
    cert: readFileSync(files.certFile),
    key: readFileSync(files.keyFile),
    ...(files.clientCaFile === undefined ? {} : { ca: readFileSync(files.clientCaFile) }),
  };
}

/**
 * connect-es percent-encodes the grpc-message trailer with encodeURIComponent, and grpc-js decodes
 * it with decodeURI, which leaves "%2C", "%3A", … in place: a grpc-js caller would read
 * "field%3A reason". Re-encoding with the gRPC spec's own set (only "%" and bytes outside
 * 0x20–0x7E) reads the same in every client.
 */
function specGrpcMessage(res: Http2ServerResponse): void {
  const addTrailers = res.addTrailers.bind(res);
  res.addTrailers = (trailers: OutgoingHttpHeaders) => {
    const message = trailers["grpc-message"];
    if (typeof message === "string") trailers["grpc-message"] = encodeGrpcMessage(decodeGrpcMessage(message));
    addTrailers(trailers);
  };
}

function decodeGrpcMessage(text: string): string {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/** gRPC's content types (not gRPC-Web's, which HTTP/1.1 carries). */
const GRPC_CONTENT_TYPE = /^application\/grpc(\+[a-z]+)?(;|$)/i;

/**
 * Answers a gRPC call that came over HTTP/1.1 and returns true: gRPC needs HTTP/2 (its status
 * travels in trailers), so instead of an empty 200 the caller reads 505 HTTP Version Not Supported
 * with a line saying what to use. gRPC-Web and Connect calls return false: they work on HTTP/1.1.
 */
function grpcOverHttp1(req: IncomingMessage, res: ServerResponse): boolean {
  if (!GRPC_CONTENT_TYPE.test(req.headers["content-type"] ?? "")) return false;
  const text =
    "gRPC requires HTTP/2: connect with HTTP/2 (with prior knowledge on a cleartext port), " +
    "or use gRPC-Web or Connect over HTTP/1.1\n";
  res.writeHead(505, {
    "content-type": "text/plain; charset=utf-8",
    "content-length": Buffer.byteLength(text),
    connection: "close",
  });
  res.end(text);
  // The request body is not read: the connection closes once the answer is out.
  req.resume();
  return true;
}

/** The first bytes an HTTP/2 client with prior knowledge sends. */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");

/** How long a new connection may stay silent before it is dropped. */
const FIRST_BYTES_TIMEOUT_MS = 10_000;

/**
 * Starts the API server. One port serves HTTP/2 with prior knowledge (what gRPC clients speak
 * over cleartext) and HTTP/1.1 (Connect and gRPC-Web from browsers, curl, fetch): Node 20's
 * cleartext HTTP/2 server cannot fall back to HTTP/1.1, so each connection's first bytes pick one.
 */
export async function startApiServer(options: ApiServerOptions): Promise<ApiServer> {
  const { logger } = options;
  const handler = createRpcHandler({
    routes: options.routes,
    readMaxBytes: options.readMaxBytes,
    interceptors: options.interceptors,
    cutOff: options.shutdownSignal,
    contextValues: callContextValues,
    logger,
  });
  const { direct } = options;
  const h2 = createHttp2Server({}, (req, res) => {
    if (direct?.(req, res) === true) return;
    specGrpcMessage(res);
    return handler(req, res);
  });
  const h1 = createHttp1Server((req, res) => {
    if (grpcOverHttp1(req, res)) return;
    return handler(req, res);
  });

  const sessions = new Set<Http2Session>();
  const http1Sockets = new Set<Socket>();
  // Destroying an HTTP/2 session does not always destroy a socket handed over with emit("connection").
  const http2Sockets = new Set<Socket>();
  h2.on("session", (session: Http2Session) => {
    sessions.add(session);
    keepAlive(session, options.keepalive, logger);
    session.once("close", () => sessions.delete(session));
    // A client that misbehaves or goes away must not take the daemon down.
    session.on("error", (err) => logger.debug({ err }, "http2 session error"));
  });
  h2.on("sessionError", (err) => logger.debug({ err }, "http2 session error"));
  h1.on("clientError", (err: Error, socket: Duplex) => {
    logger.debug({ err }, "http/1.1 client error");
    socket.destroy();
  });

  const pending = new Set<Socket>();
  // With TLS, a secure HTTP/2 server takes every connection and picks h2 or HTTP/1.1 by ALPN.
  const tlsFiles = options.tls;
  let secure: Http2SecureServer | undefined;
  if (tlsFiles !== undefined) {
    const mutual = tlsFiles.clientCaFile !== undefined;
    secure = createSecureServer(
      {
        ...secureContextOptions(tlsFiles),
        allowHTTP1: true,
        requestCert: mutual,
        rejectUnauthorized: mutual,
      },
      (req, res) => {
        if ("addTrailers" in res && req.httpVersionMajor === 2) {
          if (direct?.(req as Http2ServerRequest, res as Http2ServerResponse) === true) return;
          specGrpcMessage(res as Http2ServerResponse);
        } else if (grpcOverHttp1(req as unknown as IncomingMessage, res as unknown as ServerResponse)) {
          return;
        }
        return handler(req, res);
      },
    );
    secure.on("session", (session: Http2Session) => {
      sessions.add(session);
      keepAlive(session, options.keepalive, logger);
      session.once("close", () => sessions.delete(session));
      session.on("error", (err) => logger.debug({ err }, "http2 session error"));
    });
    secure.on("tlsClientError", (err) => logger.debug({ err }, "TLS handshake failed"));
  }
  const server = createNetServer((socket) => {
    if (secure !== undefined) {
      socket.on("error", (err) => logger.debug({ err }, "connection error"));
      // Tracked raw, so that a forced close destroys it whatever protocol it speaks.
      http2Sockets.add(socket);
      socket.once("close", () => http2Sockets.delete(socket));
      secure.emit("connection", socket);
      return;
    }
    pending.add(socket);
    socket.on("error", (err) => logger.debug({ err }, "connection error"));
    socket.setTimeout(FIRST_BYTES_TIMEOUT_MS, () => socket.destroy());
    socket.once("close", () => pending.delete(socket));
    socket.once("data", (chunk: Buffer) => {
      pending.delete(socket);
      socket.setTimeout(0);
      socket.pause();
      socket.unshift(chunk);
      const n = Math.min(chunk.length, HTTP2_PREFACE.length);
      if (chunk.subarray(0, n).equals(HTTP2_PREFACE.subarray(0, n))) {
        http2Sockets.add(socket);
        socket.once("close", () => http2Sockets.delete(socket));
        h2.emit("connection", socket);
      } else {
        http1Sockets.add(socket);
        socket.once("close", () => http1Sockets.delete(socket));
        h1.emit("connection", socket);
        socket.resume();
      }
    });
  });

  server.listen(options.port, options.host);
  try {
    await Promise.race([
      once(server, "listening"),
      once(server, "error").then(([err]) => Promise.reject(err)),
    ]);
  } catch (err) {
    throw new Error(
      `cannot listen on ${formatAddress(options.host, options.port)}: ${(err as Error).message}` +
        ((err as NodeJS.ErrnoException).code === "EADDRINUSE" ? " (another weftd running? use --addr)" : ""),
    );
  }
  server.on("error", (err) => logger.error({ err }, "api server error"));
  const bound = server.address() as AddressInfo;

  return {
    port: bound.port,
    address: formatAddress(bound.address, bound.port),
    reloadTls() {
      if (tlsFiles === undefined || secure === undefined) return;
      secure.setSecureContext(secureContextOptions(tlsFiles));
      logger.info({ cert: tlsFiles.certFile }, "TLS certificate reloaded");
    },
    async close(forceAfterMs: number) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of pending) socket.destroy();
      for (const session of sessions) session.close();
      for (const socket of http1Sockets) socket.end();
      const force = setTimeout(() => {
        logger.warn(
          { http2Sessions: sessions.size, http1Connections: http1Sockets.size },
          "destroying connections still open after shutdown",
        );
        for (const session of sessions) session.destroy();
        for (const socket of http2Sockets) socket.destroy();
        for (const socket of http1Sockets) socket.destroy();
      }, forceAfterMs);
      try {
        await closed;
      } finally {
        clearTimeout(force);
      }
    },
  };
}
