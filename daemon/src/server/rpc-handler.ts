import type { IncomingMessage, ServerResponse } from "node:http";
import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import {
  Code,
  ConnectError,
  type ConnectRouter,
  type ContextValues,
  createConnectRouter,
  type Interceptor,
} from "@connectrpc/connect";
import {
  createAsyncIterable,
  encodeEnvelope,
  type UniversalHandler,
  type UniversalServerRequest,
  type UniversalServerResponse,
} from "@connectrpc/connect/protocol";
import { codeToHttpStatus, errorFromJsonBytes, errorToJsonBytes } from "@connectrpc/connect/protocol-connect";
import { findTrailerError, setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { trailerFlag, trailerParse, trailerSerialize } from "@connectrpc/connect/protocol-grpc-web";
import {
  compressionBrotli,
  compressionGzip,
  universalRequestFromNodeRequest,
  universalResponseToNodeResponse,
} from "@connectrpc/connect-node";
import type { Logger } from "pino";
import { AbortFanOut } from "./abort-fanout.js";
import { decodeError, REQUEST_RECURSION_LIMIT } from "./call-errors.js";

/** Options of {@link createRpcHandler}. */
export interface RpcHandlerOptions {
  /** Registers every service. */
  routes: (router: ConnectRouter) => void;
  /** Largest request message, after decompression. */
  readMaxBytes: number;
  /** Applied to every call, first one outermost. */
  interceptors: Interceptor[];
  /** Aborting it aborts the context signal of every call still running (end of the shutdown grace). */
  cutOff: AbortSignal;
  /** The context values a call starts with. */
  contextValues: (req: IncomingMessage | Http2ServerRequest) => ContextValues;
  logger: Logger;
}

/**
 * The request handler of the API port, as connect-node's `connectNodeAdapter` builds it (gRPC,
 * gRPC-Web and Connect on one router), with two differences:
 * - the end of the shutdown grace reaches each open call through one listener fanning out to the
 *   calls (Connect adds a listener per call to its `shutdownSignal`: a warning past 10 open calls);
 * - a unary request whose binary message Connect cannot decode (for example nested past
 *   REQUEST_RECURSION_LIMIT) is answered INVALID_ARGUMENT, as the same failure is on streams and on
 *   weftd's direct gRPC path, not INTERNAL: Connect decodes a unary request before any
 *   interceptor runs, so the answer is corrected here, in the protocol the call used.
 */
export function createRpcHandler(
  options: RpcHandlerOptions,
): (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse) => void {
  const router = createConnectRouter({
    readMaxBytes: options.readMaxBytes,
    interceptors: options.interceptors,
    acceptCompression: [compressionGzip, compressionBrotli],
    binaryOptions: { recursionLimit: REQUEST_RECURSION_LIMIT },
    jsonOptions: { recursionLimit: REQUEST_RECURSION_LIMIT },
  });
  options.routes(router);
  const handlers = new Map<string, (req: UniversalServerRequest) => Promise<UniversalServerResponse>>();
  for (const handler of router.handlers) handlers.set(handler.requestPath, decodeFailuresInvalid(handler));
  const calls = new AbortFanOut(options.cutOff);
  const { logger } = options;
  return (req, res) => {
    const handler = handlers.get(req.url?.split("?", 2)[0] ?? "");
    if (handler === undefined) {
      res.writeHead(404);
      res.end();
      return;
    }
    const uReq = universalRequestFromNodeRequest(req, res, undefined, options.contextValues(req));
    const call = calls.follow(uReq.signal);
    handler({ ...uReq, signal: call.signal })
      .then((uRes) => universalResponseToNodeResponse(uRes, res))
      .catch((reason: unknown) => {
        if (ConnectError.from(reason).code === Code.Aborted) return;
        logger.error({ err: reason, path: req.url }, "answering a call failed");
      })
      .finally(call.release);
  };
}

/** A unary method's handler whose answer to a request it could not decode is INVALID_ARGUMENT. */
function decodeFailuresInvalid(
  handler: UniversalHandler,
): (req: UniversalServerRequest) => Promise<UniversalServerResponse> {
  if (handler.method.methodKind !== "unary") return handler;
  return async (req) => {
    const res = await handler(req);
    const type = req.header.get("content-type") ?? "";
    if (/^application\/grpc-web(\+proto)?$/.test(type)) return grpcWebAnswer(res);
    if (/^application\/grpc(\+proto)?$/.test(type)) {
      // The trailers are written once the (empty) body has been sent: the status is set by then.
      const { trailer } = res;
      const replaced = trailer === undefined ? undefined : errorIn(findTrailerError(trailer));
      if (trailer !== undefined && replaced !== undefined) {
        trailer.delete("grpc-status-details-bin");
        setTrailerStatus(trailer, replaced);
      }
      return res;
    }
    if (type === "application/proto" && res.status !== 200) return connectAnswer(res);
    return res;
  };
}

function errorIn(err: ConnectError | undefined): ConnectError | undefined {
  return err === undefined ? undefined : decodeError(err);
}

/** gRPC-Web: a failed call's body is its trailers, one envelope flagged 0x80. */
async function grpcWebAnswer(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  if (res.body === undefined) return res;
  const it = res.body[Symbol.asyncIterator]();
  const first = await it.next();
  if (first.done === true) return { ...res, body: createAsyncIterable([]) };
  let chunk = first.value;
  if (chunk.length >= 5 && chunk[0] === trailerFlag) {
    const trailer = trailerParse(chunk.subarray(5));
    const replaced = errorIn(findTrailerError(trailer));
    if (replaced !== undefined) {
      trailer.delete("grpc-status-details-bin");
      chunk = encodeEnvelope(trailerFlag, trailerSerialize(setTrailerStatus(trailer, replaced)));
    }
  }
  return { ...res, body: prepend(chunk, it) };
}

async function* prepend(first: Uint8Array, rest: AsyncIterator<Uint8Array>): AsyncIterable<Uint8Array> {
  yield first;
  for (let next = await rest.next(); next.done !== true; next = await rest.next()) yield next.value;
}

/** Connect unary: a failed call's body is the error as JSON, uncompressed when small. */
async function connectAnswer(res: UniversalServerResponse): Promise<UniversalServerResponse> {
  if (res.body === undefined || res.header?.has("content-encoding") === true) return res;
  const chunks: Uint8Array[] = [];
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) chunks.push(chunk);
  const body = Buffer.concat(chunks);
  const replaced = errorIn(errorFromJsonBytes(body, undefined, new ConnectError("", Code.Unknown)));
  if (replaced === undefined) return { ...res, body: createAsyncIterable([body]) };
  const json = errorToJsonBytes(replaced, {});
  const header = new Headers(res.header);
  header.set("content-length", String(json.byteLength));
  return { ...res, status: codeToHttpStatus(replaced.code), header, body: createAsyncIterable([json]) };
}
