import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { type CircuitBreaker, CircuitBreakerSchema } from "@weft/sdk/gen/weft/v1/circuit_breaker_pb.js";
import type { CircuitSettings } from "../engine/definitions/index.js";

/** Circuit breaker settings as the API shows them, every default filled in. */
export function circuitBreakerOf(s: CircuitSettings): CircuitBreaker {
  return create(CircuitBreakerSchema, {
    perHandler: s.perHandler,
    failureThreshold: s.failureThreshold,
    window: durationFromMs(s.windowMs),
    openDuration: durationFromMs(s.openMs),
    halfOpenProbes: s.halfOpenProbes,
  });
}
