import type { Http2ServerRequest, Http2ServerResponse } from "node:http2";
import {
  create,
  type DescMessage,
  type DescMethodServerStreaming,
  isMessage,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type HandlerContext } from "@connectrpc/connect";
import { principalKey, type StreamLimit, type TokenCheck } from "../auth.js";
import { type CallGuard, shuttingDownError } from "./call-guard.js";
import {
  CONTENT_TYPE,
  DirectContext,
  type DirectUnary,
  directUnaryHandler,
  outgoing,
  parse,
  plainGrpc,
  readRequest,
  statusHeaders,
  timeoutMs,
} from "./grpc-unary.js";
import { envelope, writeFrames } from "./response-stream.js";

/** A server-streaming method answered over gRPC without Connect, its handler, and its token check. */
export interface DirectServerStream<
  I extends DescMessage = DescMessage,
  O extends DescMessage = DescMessage,
> {
  method: DescMethodServerStreaming<I, O>;
  handle: (req: MessageShape<I>, ctx: HandlerContext) => AsyncIterable<MessageInitShape<O>>;
  /** The check Connect's auth interceptor makes, when weftd checks tokens. */
  checkToken?: TokenCheck;
}

/** Pairs a server-streaming method with its handler (and token check), keeping their types together. */
export function directServerStream<I extends DescMessage, O extends DescMessage>(
  method: DescMethodServerStreaming<I, O>,
  handle: (req: MessageShape<I>, ctx: HandlerContext) => AsyncIterable<MessageInitShape<O>>,
  checkToken?: TokenCheck,
): DirectServerStream {
  return { method, handle, checkToken } as unknown as DirectServerStream;
}

/** What weftd answers without Connect, and what those calls pass through. */
export interface DirectGrpcOptions {
  unary: readonly DirectUnary[];
  streams: readonly DirectServerStream[];
  readMaxBytes: number;
  guard: CallGuard;
  /** The per-client limit of open streams, when weftd checks tokens. */
  streamLimit?: StreamLimit;
}

/**
 * Answers the plainest gRPC calls of Weft's unary methods (see directUnaryHandler) and of its
 * server-streaming ones (WatchRun) straight from node:http2. Connect's per-call pipeline costs a
 * stream that stays open tens of kilobytes of async generators, closures, abort signals and
 * headers objects for as long as it is open; a thousand watchers keep that much per watcher. The
 * call goes through the same steps as through Connect, in the same order: the request is read
 * (bounded by `readMaxBytes`) and parsed, the call guard counts it (refused once shutdown has
 * begun, ended UNAVAILABLE when it begins), the token check Connect's auth interceptor makes, the
 * per-client stream limit, then the handler, whose messages are written as they come, with
 * back-pressure; the status goes in the trailers (trailers-only when nothing was sent), as Connect
 * writes it. Any other call goes to Connect, which serves the same handlers.
 *
 * Returns a function that answers the call and returns true, or returns false and touches nothing.
 */
export function directGrpcHandler(
  options: DirectGrpcOptions,
): (req: Http2ServerRequest, res: Http2ServerResponse) => boolean {
  const unary = directUnaryHandler(options.unary, options);
  const byPath = new Map(options.streams.map((m) => [`/${m.method.parent.typeName}/${m.method.name}`, m]));
  const { readMaxBytes } = options;
  return (req, res) => {
    const direct = byPath.get(req.url);
    if (direct === undefined) return unary(req, res);
    if (!plainGrpc(req.method, req.headers)) return false;
    readRequest(req, res, readMaxBytes, (chunks, bytes) => serve(direct, req, res, chunks, bytes, options));
    return true;
  };
}

async function serve(
  { method, handle, checkToken }: DirectServerStream,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  chunks: Buffer[],
  bytes: number,
  { readMaxBytes, guard, streamLimit }: DirectGrpcOptions,
): Promise<void> {
  const procedure = req.url;
  const { stream } = res;
  // Aborted when the client resets the stream, its deadline passes, or shutdown begins: the handler
  // ends with the reason, which the trailers carry when the client is still there to read them.
  const call = new AbortController();
  const onClose = () => call.abort(new ConnectError("the client cancelled the call", Code.Canceled));
  stream.once("close", onClose);
  const ms = timeoutMs(req.headers);
  const deadline =
    ms === undefined
      ? undefined
      : setTimeout(
          () => call.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)),
          Math.max(1, ms),
        );
  let closeGuard = () => {};
  let releaseLimit = () => {};
  let iterator: AsyncIterator<MessageInitShape<DescMessage>> | undefined;
  let finished = false;
  let started = false;
  const ctx = new DirectContext(method, req, call.signal, ms);
  try {
    const message = parse(method.input, chunks, bytes, readMaxBytes);
    closeGuard = guard.openStream(procedure, () => call.abort(shuttingDownError()));
    const principal = checkToken?.(method.parent.typeName, procedure, req.headers.authorization);
    if (principal !== undefined) ctx.values.set(principalKey, principal);
    releaseLimit = streamLimit?.acquire(principal) ?? releaseLimit;
    // What the handler reads to write ready-made envelopes itself (see envelopeSink).
    ctx.responseHeader.set("content-type", CONTENT_TYPE);
    iterator = handle(message, ctx)[Symbol.asyncIterator]();
    for (;;) {
      const next = await iterator.next();
      if (next.done === true) {
        finished = true;
        break;
      }
      if (stream.destroyed) return;
      if (!started) {
        // Sends the headers at once: the messages then go to the HTTP/2 stream itself, as the
        // handler's own frames do (see envelopeSink).
        started = true;
        res.writeHead(200, outgoing(ctx.responseHeaders));
      }
      const value = next.value;
      const body = isMessage(value, method.output) ? value : create(method.output, value);
      await writeFrames(stream, [envelope(toBinary(method.output, body))], call.signal);
    }
    if (stream.destroyed) return;
    if (!started) res.writeHead(200, outgoing(ctx.responseHeaders));
    res.addTrailers({ ...outgoing(ctx.responseTrailers), "grpc-status": "0" });
    res.end();
  } catch (err) {
    if (stream.destroyed) return;
    const error =
      call.signal.reason instanceof ConnectError && call.signal.reason.code === Code.Unavailable
        ? call.signal.reason
        : guard.callErrorOf(err, procedure, call.signal);
    if (!started && !stream.headersSent) {
      // Trailers-only: the status in the one HEADERS frame, which ends the stream.
      stream.respond(
        { ":status": 200, "content-type": CONTENT_TYPE, ...statusHeaders(error) },
        { endStream: true },
      );
      return;
    }
    res.addTrailers({ ...outgoing(ctx.responseTrailers), ...statusHeaders(error) });
    res.end();
  } finally {
    clearTimeout(deadline);
    stream.off("close", onClose);
    // The handler frees what it holds once it is told the call is over: its signal aborts then, as
    // Connect's does.
    if (!finished) iterator?.return?.().catch(() => {});
    if (!call.signal.aborted) call.abort(new ConnectError("the call is over", Code.Canceled));
    releaseLimit();
    closeGuard();
  }
}
