import { toJson } from "@bufbuild/protobuf";
import {
  type Circuit,
  type CircuitBreakerSpec,
  CircuitState,
  formatDuration,
  fromDuration,
  type Queue,
} from "@weft/sdk";
import { QueueSchema } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import type { Command } from "../command.js";
import { UsageError } from "../exit-codes.js";
import { table, time } from "../format.js";
import { oneArg, positiveInt } from "./args.js";

/** A circuit's state in a few words: `open until 10:00:05Z`, `half-open (1 probe)`, `closed (2 failures)`. */
export function circuitText(c: Circuit): string {
  switch (c.state) {
    case CircuitState.OPEN:
      return c.openUntil === undefined ? "open (until closed by hand)" : `open until ${time(c.openUntil)}`;
    case CircuitState.HALF_OPEN:
      return `half-open (${c.probesInFlight} probe${c.probesInFlight === 1 ? "" : "s"} in flight)`;
    default:
      return c.failuresInWindow > 0 ? `closed (${c.failuresInWindow} recent failures)` : "closed";
  }
}

/** The circuits of a queue on one line, for `weft queues ls`: `-`, `open`, `charge: half-open`. */
export function circuitsSummary(q: Queue): string {
  const names = (c: Circuit) => (c.handler === "" ? "" : `${c.handler}: `);
  const shown = q.circuits.filter((c) => c.state !== CircuitState.CLOSED);
  if (shown.length === 0) return q.circuitBreaker === undefined && q.circuits.length === 0 ? "-" : "closed";
  return shown.map((c) => `${names(c)}${c.state === CircuitState.OPEN ? "open" : "half-open"}`).join(", ");
}

/** `weft queues circuit QUEUE`. */
export const queuesCircuit: Command = {
  path: ["queues", "circuit"],
  summary: "show, set, open or close the circuit breakers of a task queue",
  help: `Usage: weft queues circuit QUEUE
       weft queues circuit QUEUE --open [--for DURATION] [--handler NAME]
       weft queues circuit QUEUE --close [--handler NAME]
       weft queues circuit QUEUE --threshold N [--window D] [--open-duration D] [--probes N] [--per-handler]
       weft queues circuit QUEUE --clear

Shows the queue's circuit breakers, or changes them. While a circuit is open its tasks are held back
(not failed, no attempt used) until it lets a probe through; a probe that succeeds closes it.

Options:
  --open                open the circuit by hand (the whole queue's, or --handler's)
  --for <duration>      with --open: for this long, then it lets probes through (default: until --close)
  --close               close the circuit by hand
  --handler <name>      the circuit of this handler rather than the whole queue's
  --threshold <n>       set the queue's circuit breaker: failures within the window that open it
  --window <duration>   ... the window failures are counted in (default 1m)
  --open-duration <d>   ... how long it stays open before probing (default 30s)
  --probes <n>          ... tasks a half-open circuit lets through (default 1)
  --per-handler         ... one circuit per handler rather than one for the queue
  --clear               remove the queue's circuit breaker settings`,
  options: {
    open: { type: "boolean" },
    for: { type: "string" },
    close: { type: "boolean" },
    handler: { type: "string" },
    threshold: { type: "string" },
    window: { type: "string" },
    "open-duration": { type: "string" },
    probes: { type: "string" },
    "per-handler": { type: "boolean" },
    clear: { type: "boolean" },
  },
  async run({ args, options, io, client }) {
    const name = oneArg(args, "QUEUE");
    const setting = ["threshold", "window", "open-duration", "probes", "per-handler"].some(
      (o) => options[o] !== undefined,
    );
    const actions = [options.open === true, options.close === true, setting, options.clear === true].filter(
      Boolean,
    );
    if (actions.length > 1) throw new UsageError("give one of --open, --close, the settings, --clear");
    if (options.for !== undefined && options.open !== true) throw new UsageError("--for goes with --open");
    let queue: Queue;
    if (options.open === true || options.close === true) {
      queue = await client().setCircuitState(name, options.open === true ? "open" : "closed", {
        ...(options.handler === undefined ? {} : { handler: String(options.handler) }),
        ...(options.for === undefined ? {} : { openFor: String(options.for) }),
      });
    } else if (setting) {
      const spec: CircuitBreakerSpec = { perHandler: options["per-handler"] === true };
      if (options.threshold !== undefined)
        spec.failureThreshold = positiveInt(String(options.threshold), "--threshold");
      if (options.window !== undefined) spec.window = String(options.window);
      if (options["open-duration"] !== undefined) spec.openDuration = String(options["open-duration"]);
      if (options.probes !== undefined) spec.halfOpenProbes = positiveInt(String(options.probes), "--probes");
      queue = await client().setCircuitBreaker(name, spec);
    } else if (options.clear === true) {
      queue = await client().setCircuitBreaker(name, null);
    } else {
      queue = await client().getQueue(name);
    }
    if (options.json === true) {
      io.out(`${JSON.stringify(toJson(QueueSchema, queue))}\n`);
      return 0;
    }
    const cb = queue.circuitBreaker;
    const ms = (d: Parameters<typeof fromDuration>[0] | undefined) =>
      formatDuration(d === undefined ? 0 : fromDuration(d));
    io.out(
      cb === undefined
        ? `queue ${queue.name}: no circuit breaker settings of its own (its workflows may set one)\n`
        : `queue ${queue.name}: opens after ${cb.failureThreshold} failures within ${ms(cb.window)}` +
            `${cb.perHandler ? " per handler" : ""}, stays open ${ms(cb.openDuration)}, ` +
            `${cb.halfOpenProbes} probe${cb.halfOpenProbes === 1 ? "" : "s"} when half-open\n`,
    );
    if (queue.circuits.length > 0) {
      io.out(
        table(
          ["CIRCUIT", "STATE", "SINCE", "OPENED"],
          queue.circuits.map((c) => [
            c.handler === "" ? "(queue)" : c.handler,
            `${circuitText(c)}${c.manual ? ", set by hand" : ""}`,
            time(c.since),
            String(c.openedCount),
          ]),
        ),
      );
    }
    return 0;
  },
};
