import { Code, ConnectError } from "@connectrpc/connect";
import type { Logger } from "pino";
import { MAX_JSON_DEPTH } from "../engine/shared/index.js";
import { redisErrorToConnect } from "../redis/redis.js";

/**
 * Deepest message nesting weftd decodes in a request (protobuf-es counts each message; its default
 * is 100). Far deeper than any valid request (a JSON value may nest MAX_JSON_DEPTH levels, two
 * message levels each), so that a value somewhat too deep is still decoded and refused naming its
 * field ("input: nests 51 levels; at most 30 are allowed"); only one nested past about 125 levels
 * in binary (256 in JSON, one message level each) fails to decode, with {@link requestNotDecoded}'s
 * message.
 */
export const REQUEST_RECURSION_LIMIT = 256;

/** What a caller reads for an error weftd did not expect; the log has the details. */
const INTERNAL_ERROR_MESSAGE = "internal error in weftd (logged with its cause)";

/**
 * The error a caller gets for `err`, the same on every path (unary, streams, each result of a batch
 * answer): a Redis connection error is UNAVAILABLE with a short message; a ConnectError is kept,
 * except a request that failed to decode, which is INVALID_ARGUMENT (see {@link decodeError});
 * anything else is logged here in full, once, and answered INTERNAL with a generic message, never
 * a library's own text.
 */
export function callError(err: unknown, logger: Logger, context: Record<string, unknown>): ConnectError {
  const mapped = redisErrorToConnect(err);
  if (mapped instanceof ConnectError) return decodeError(mapped) ?? mapped;
  logger.error({ err, ...context }, "unexpected error");
  return new ConnectError(INTERNAL_ERROR_MESSAGE, Code.Internal, undefined, undefined, err);
}

/**
 * INVALID_ARGUMENT for a request message that could not be decoded from binary, which Connect
 * reports as INTERNAL ("parse binary: …"); undefined for any other error. A message nested past
 * {@link REQUEST_RECURSION_LIMIT} says so and what the limit on JSON values is.
 */
export function decodeError(err: ConnectError): ConnectError | undefined {
  if (err.code !== Code.Internal || !err.rawMessage.startsWith("parse binary: ")) return undefined;
  return requestNotDecoded(err.rawMessage.slice("parse binary: ".length));
}

/** INVALID_ARGUMENT for a request message protobuf-es could not decode, saying why in `reason`. */
export function requestNotDecoded(reason: string): ConnectError {
  if (/maximum recursion depth/.test(reason)) {
    return new ConnectError(
      `the request message nests deeper than ${REQUEST_RECURSION_LIMIT} message levels and was not decoded; ` +
        `a JSON value (google.protobuf.Value) may nest at most ${MAX_JSON_DEPTH} levels`,
      Code.InvalidArgument,
    );
  }
  return new ConnectError(`the request message is not valid protobuf: ${reason}`, Code.InvalidArgument);
}
