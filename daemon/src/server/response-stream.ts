import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest, Http2Stream } from "node:http2";
import type { Writable } from "node:stream";
import { create, type DescMessage, type MessageInitShape, toBinary } from "@bufbuild/protobuf";
import {
  type ContextValues,
  createContextKey,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";
import { type PeerLiveness, peerOf } from "./peer-liveness.js";

const streamKey = createContextKey<Writable | undefined>(undefined, {
  description: "HTTP/2 stream of the call",
});

/** The liveness of the client a call came from, when it came over HTTP/2 (see peer-liveness.ts). */
export function peerOfCall(ctx: { values: ContextValues }): PeerLiveness | undefined {
  return peerOf((ctx.values.get(streamKey) as Http2Stream | undefined)?.session);
}

/** Response content types whose messages are binary envelopes: 5-byte header, protobuf body. */
const BINARY_ENVELOPES = /^application\/(grpc|grpc\+proto|grpc-web\+proto|connect\+proto)$/;

/** The context values every call starts with: its HTTP/2 stream, when it came over HTTP/2. */
export function callContextValues(req: IncomingMessage | Http2ServerRequest): ContextValues {
  const values = createContextValues();
  if (req.httpVersionMajor === 2 && "stream" in req) values.set(streamKey, req.stream);
  return values;
}

/**
 * The HTTP/2 stream a streaming handler may write its later responses to as ready-made envelopes,
 * once the framework has written the headers and a first message: only when the call came over
 * HTTP/2 and its responses are binary envelopes (gRPC, gRPC-Web or Connect with protobuf). An
 * uncompressed envelope is valid whatever compression was negotiated, since every envelope says
 * whether it is compressed.
 */
export function envelopeSink(ctx: HandlerContext): Writable | undefined {
  const stream = ctx.values.get(streamKey);
  if (stream === undefined) return undefined;
  return BINARY_ENVELOPES.test(ctx.responseHeader.get("content-type") ?? "") ? stream : undefined;
}

/** A message as one uncompressed binary envelope (gRPC, gRPC-Web and Connect frame it alike). */
export function envelope(body: Uint8Array): Buffer {
  const frame = Buffer.allocUnsafe(5 + body.length);
  frame[0] = 0;
  frame.writeUInt32BE(body.length, 1);
  frame.set(body, 5);
  return frame;
}

/**
 * Writes messages to a sink from {@link envelopeSink} as envelopes, in one write; resolves once the
 * sink takes more (at once, unless its buffer is full), or when it closes or the call ends.
 */
export async function writeEnvelopes<Desc extends DescMessage>(
  sink: Writable,
  schema: Desc,
  messages: readonly MessageInitShape<Desc>[],
  signal: AbortSignal,
): Promise<void> {
  await writeFrames(
    sink,
    messages.map((m) => envelope(toBinary(schema, create(schema, m)))),
    signal,
  );
}

/**
 * Writes ready-made envelopes to a sink from {@link envelopeSink}, in one write; resolves as
 * {@link writeEnvelopes} does.
 */
export async function writeFrames(sink: Writable, frames: Buffer[], signal: AbortSignal): Promise<void> {
  // A stream closed under the call ends the call, and its signal the handler.
  if (sink.destroyed || sink.writableEnded) return;
  if (sink.write(frames.length === 1 ? frames[0] : Buffer.concat(frames))) return;
  await new Promise<void>((resolve) => {
    const done = () => {
      sink.off("drain", done);
      sink.off("close", done);
      signal.removeEventListener("abort", done);
      resolve();
    };
    sink.on("drain", done);
    sink.on("close", done);
    signal.addEventListener("abort", done, { once: true });
    if (signal.aborted) done();
  });
}
