import type { IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http";
import { constants, type Http2ServerRequest, type Http2ServerResponse } from "node:http2";
import {
  create,
  type DescMessage,
  type DescMethodServerStreaming,
  type DescMethodUnary,
  type DescService,
  fromBinary,
  type MessageInitShape,
  type MessageShape,
  toBinary,
} from "@bufbuild/protobuf";
import { Code, ConnectError, type ContextValues, type HandlerContext } from "@connectrpc/connect";
import { setTrailerStatus } from "@connectrpc/connect/protocol-grpc";
import { principalKey, type TokenCheck } from "../auth.js";
import { REQUEST_RECURSION_LIMIT, requestNotDecoded } from "./call-errors.js";
import type { CallGuard } from "./call-guard.js";
import { callContextValues, envelope } from "./response-stream.js";

/** A unary method answered over gRPC without Connect, its handler, and the token check its calls pass. */
export interface DirectUnary<I extends DescMessage = DescMessage, O extends DescMessage = DescMessage> {
  method: DescMethodUnary<I, O>;
  handle: (req: MessageShape<I>, ctx: HandlerContext) => Promise<MessageInitShape<O>>;
  /** The check Connect's auth interceptor makes, when weftd checks tokens. */
  checkToken?: TokenCheck;
}

/** Pairs a method with its handler (and token check), keeping their types together. */
export function directUnary<I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  handle: (req: MessageShape<I>, ctx: HandlerContext) => Promise<MessageInitShape<O>>,
  checkToken?: TokenCheck,
): DirectUnary {
  return { method, handle, checkToken } as unknown as DirectUnary;
}

const GRPC_CONTENT_TYPES = new Set(["application/grpc", "application/grpc+proto"]);
export const CONTENT_TYPE = "application/grpc+proto";

/**
 * Answers the plainest gRPC calls of the Weft unary methods straight from node:http2, without
 * Connect's per-call pipeline (headers objects, async iterables, two abort signals): about 0.2 ms of
 * CPU per call here. Only a call that needs nothing more is taken — gRPC with protobuf over HTTP/2,
 * no compression —; every other call goes to Connect, which serves the same handler. What the call
 * does is the same either way, in the same order: the request is read (bounded by `readMaxBytes`)
 * and parsed, the call guard runs (shutdown, calls in flight, error codes), then the token check
 * Connect's auth interceptor makes (when weftd checks tokens), then the handler; an error is a
 * trailers-only answer with grpc-status, grpc-message and grpc-status-details-bin as Connect
 * writes them.
 *
 * Returns a function that answers the call and returns true, or returns false and touches nothing.
 */
export function directUnaryHandler(
  methods: readonly DirectUnary[],
  options: { readMaxBytes: number; guard: CallGuard },
): (req: Http2ServerRequest, res: Http2ServerResponse) => boolean {
  const byPath = new Map(methods.map((m) => [`/${m.method.parent.typeName}/${m.method.name}`, m]));
  const { readMaxBytes, guard } = options;
  return (req, res) => {
    const direct = byPath.get(req.url);
    if (direct === undefined || !plainGrpc(req.method, req.headers)) return false;
    readRequest(req, res, readMaxBytes, (chunks, bytes) =>
      answer(direct, req, res, chunks, bytes, readMaxBytes, guard),
    );
    return true;
  };
}

/**
 * Reads a call's request body, keeping at most `readMaxBytes` and its envelope's header (the rest
 * is read and dropped: the answer says why), then answers with what it kept and the size it read.
 * Nothing a call sends may take weftd down: an answer that fails resets the call's stream.
 */
export function readRequest(
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  readMaxBytes: number,
  answerWith: (chunks: Buffer[], bytes: number) => Promise<void>,
): void {
  const chunks: Buffer[] = [];
  let bytes = 0;
  req.on("data", (chunk: Buffer) => {
    bytes += chunk.length;
    if (bytes <= readMaxBytes + 5) chunks.push(chunk);
  });
  req.once("end", () => {
    answerWith(chunks, bytes).catch(() => {
      if (!res.stream.destroyed) res.stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    });
  });
}

/** Whether a call is gRPC with protobuf, uncompressed, with a well-formed deadline if any. */
export function plainGrpc(method: string, headers: IncomingHttpHeaders): boolean {
  const encoding = headers["grpc-encoding"];
  const timeout = headers["grpc-timeout"];
  return (
    method === "POST" &&
    GRPC_CONTENT_TYPES.has(headers["content-type"] ?? "") &&
    (encoding === undefined || encoding === "identity") &&
    (timeout === undefined || (typeof timeout === "string" && TIMEOUT.test(timeout)))
  );
}

/** A grpc-timeout value as the spec writes it (anything else is Connect's to refuse). */
const TIMEOUT = /^(\d{1,8})([HMSmun])$/;
const TIMEOUT_UNIT_MS: Record<string, number> = { H: 3_600_000, M: 60_000, S: 1000, m: 1, u: 1e-3, n: 1e-6 };

/** The call's deadline in ms from now, if it has one. */
export function timeoutMs(headers: IncomingHttpHeaders): number | undefined {
  const value = headers["grpc-timeout"];
  const match = typeof value === "string" ? TIMEOUT.exec(value) : null;
  if (match === null) return undefined;
  return Number(match[1]) * (TIMEOUT_UNIT_MS[match[2] as string] as number);
}

async function answer(
  { method, handle, checkToken }: DirectUnary,
  req: Http2ServerRequest,
  res: Http2ServerResponse,
  chunks: Buffer[],
  bytes: number,
  readMaxBytes: number,
  guard: CallGuard,
): Promise<void> {
  const procedure = req.url;
  // Aborted when the client resets the stream before its answer, or its deadline passes (as Connect
  // does, the handler runs on: the caller has stopped waiting, and an error then reads as the deadline).
  const gone = new AbortController();
  const onClose = () => gone.abort();
  res.stream.once("close", onClose);
  const ms = timeoutMs(req.headers);
  const deadline =
    ms === undefined
      ? undefined
      : setTimeout(
          () => gone.abort(new ConnectError("the operation timed out", Code.DeadlineExceeded)),
          Math.max(1, ms),
        );
  try {
    const message = parse(method.input, chunks, bytes, readMaxBytes);
    const ctx = new DirectContext(method, req, gone.signal, ms);
    const output = await guard.unary(procedure, gone.signal, () => {
      const principal = checkToken?.(method.parent.typeName, procedure, req.headers.authorization);
      if (principal !== undefined) ctx.values.set(principalKey, principal);
      return handle(message, ctx);
    });
    const body = envelope(toBinary(method.output, create(method.output, output)));
    if (res.stream.destroyed) return;
    res.writeHead(200, { ...outgoing(ctx.responseHeaders), "content-type": CONTENT_TYPE });
    res.addTrailers({ ...outgoing(ctx.responseTrailers), "grpc-status": "0" });
    res.end(body);
  } catch (err) {
    const { stream } = res;
    if (stream.destroyed || stream.headersSent) return;
    // Trailers-only: the status in the one HEADERS frame, which ends the stream.
    stream.respond(
      { ":status": 200, "content-type": CONTENT_TYPE, ...statusHeaders(ConnectError.from(err)) },
      { endStream: true },
    );
  } finally {
    clearTimeout(deadline);
    res.stream.off("close", onClose);
  }
}

/**
 * What a handler gets to know of its call, as Connect's context tells it: the signal aborts when the
 * client goes or the deadline passes, and the values hold the caller once its token is checked. Its
 * headers objects are made on first use (Weft's handlers read and set none); response headers and
 * trailers a handler sets are sent with a successful answer.
 */
export class DirectContext implements HandlerContext {
  readonly protocolName = "grpc";
  readonly requestMethod = "POST";
  readonly values: ContextValues;
  private readonly deadline: number | undefined;
  private requestHeaders: Headers | undefined;
  /** The response headers and trailers, once the handler asked for them. */
  responseHeaders: Headers | undefined;
  responseTrailers: Headers | undefined;

  constructor(
    readonly method: DescMethodUnary | DescMethodServerStreaming,
    private readonly req: Http2ServerRequest,
    readonly signal: AbortSignal,
    timeoutMs: number | undefined,
  ) {
    this.deadline = timeoutMs === undefined ? undefined : Date.now() + timeoutMs;
    this.values = callContextValues(req);
  }

  get service(): DescService {
    return this.method.parent;
  }

  get url(): string {
    return `${this.req.scheme ?? "http"}://${this.req.authority}${this.req.url}`;
  }

  timeoutMs(): number | undefined {
    return this.deadline === undefined ? undefined : this.deadline - Date.now();
  }

  get requestHeader(): Headers {
    if (this.requestHeaders === undefined) {
      this.requestHeaders = new Headers();
      for (const [name, value] of Object.entries(this.req.headers)) {
        if (name.startsWith(":") || value === undefined) continue;
        for (const v of Array.isArray(value) ? value : [value]) this.requestHeaders.append(name, v);
      }
    }
    return this.requestHeaders;
  }

  get responseHeader(): Headers {
    this.responseHeaders ??= new Headers();
    return this.responseHeaders;
  }

  get responseTrailer(): Headers {
    this.responseTrailers ??= new Headers();
    return this.responseTrailers;
  }
}

/** Fetch headers as node:http2 takes them. */
export function outgoing(headers: Headers | undefined): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  headers?.forEach((value, key) => {
    out[key] = value;
  });
  return out;
}

/** The one request message of a unary call: a single uncompressed envelope. */
export function parse<I extends DescMessage>(
  schema: I,
  chunks: Buffer[],
  bytes: number,
  readMaxBytes: number,
): MessageShape<I> {
  if (bytes > readMaxBytes + 5) {
    throw new ConnectError(
      `message size ${bytes - 5} is larger than configured readMaxBytes ${readMaxBytes}`,
      Code.ResourceExhausted,
    );
  }
  const body = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
  if (body.length < 5)
    throw new ConnectError("protocol error: missing request message", Code.InvalidArgument);
  if (body[0] !== 0) {
    throw new ConnectError(
      "protocol error: the request message is flagged compressed, and no grpc-encoding was sent",
      Code.Internal,
    );
  }
  const length = body.readUInt32BE(1);
  if (length !== body.length - 5) {
    throw new ConnectError(
      length > body.length - 5
        ? `protocol error: promised ${length} bytes in enveloped message, got ${body.length - 5} bytes`
        : "protocol error: received extra input message for unary method",
      Code.InvalidArgument,
    );
  }
  try {
    return fromBinary(schema, body.subarray(5), { recursionLimit: REQUEST_RECURSION_LIMIT });
  } catch (err) {
    throw requestNotDecoded(err instanceof Error ? err.message : String(err));
  }
}

/** grpc-status, grpc-message (percent-encoded as the gRPC spec asks) and details, as Connect sets them. */
export function statusHeaders(error: ConnectError): OutgoingHttpHeaders {
  const headers = new Headers();
  setTrailerStatus(headers, error);
  const out = outgoing(headers);
  if (out["grpc-message"] !== undefined) out["grpc-message"] = encodeGrpcMessage(error.rawMessage);
  return out;
}

/** Percent-encodes as the gRPC HTTP/2 spec asks for grpc-message. */
export function encodeGrpcMessage(text: string): string {
  let out = "";
  for (const byte of Buffer.from(text, "utf8")) {
    out +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return out;
}
