import type { IncomingMessage } from "node:http";
import type { Http2ServerRequest } from "node:http2";
import type { Writable } from "node:stream";
import {
  type ContextValues,
  createContextKey,
  createContextValues,
  type HandlerContext,
} from "@connectrpc/connect";

const streamKey = createContextKey<Writable | undefined>(undefined, {
  description: "HTTP/2 stream of the call",
});

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
