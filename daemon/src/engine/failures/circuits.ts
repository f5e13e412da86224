import { create } from "@bufbuild/protobuf";
import { timestampFromMs } from "@bufbuild/protobuf/wkt";
import { type Circuit, CircuitSchema, CircuitState } from "@weft/sdk/gen/weft/v1/circuit_breaker_pb.js";
import type { Logger } from "pino";
import { logThrottle } from "../../observability/log-throttle.js";
import type { Policy } from "../../policy.js";
import { defineScript, type RedisClient } from "../../redis/redis.js";
import {
  CIRCUIT_DEFAULTS,
  type CircuitSettings,
  type CompiledTask,
  type LoadedWorkflow,
  type ResolvedRetryPolicy,
  resolveCircuitBreaker,
} from "../definitions/index.js";
import type { TaskQueues } from "../dispatch/index.js";
import { anySlotPipeline, type Keys } from "../shared/index.js";
import { ADMIT, FAILURE, SET_STATE, SUCCESS } from "./circuit-scripts.js";

/** Whether a task may start now, and if not, for how long and why it is held back. */
export type CircuitVerdict =
  | { held: false }
  | {
      held: true;
      /** When to look again (epoch ms); undefined: the circuit stays open until closed by hand. */
      until: number | undefined;
      /** Why, as the run shows it (a stable text: it changes only with the circuit's state). */
      reason: string;
      /** The circuit of the whole queue holds it (rather than the handler's). */
      queueWide: boolean;
    };

/** Error types never counted: the task could not be started, or was never tried. */
const NOT_COUNTED = new Set(["ScheduleToStartTimeout", "UnknownHandler", "InputsTooLarge"]);

/** How long a replica keeps a queue's settings and whether it has circuits, before reading them again. */
const CACHE_MS = 1000;

type Script = (...args: (string | number)[]) => Promise<unknown>;

interface QueueCircuits {
  settings: CircuitSettings | undefined;
  /** Some circuit of the queue has a state (it counted a failure, or was set by hand). */
  active: boolean;
  until: number;
}

interface StoredState {
  s: "C" | "O" | "H";
  t: number;
  u: number;
  m: number;
  n?: number;
}

/** Whether a failure counts towards a circuit: retryable errors and timeouts, not the others. */
export function countsForCircuit(policy: ResolvedRetryPolicy, type: string, retryable: boolean): boolean {
  return retryable && !NOT_COUNTED.has(type) && !policy.nonRetryableErrorTypes.includes(type);
}

/**
 * Circuit breakers per task queue, or per handler within a queue: settings from the queue
 * (AdminService, the configuration file) or else the task's workflow's default, state in Redis
 * changed only by Lua steps, so every replica sees one state. A queue without settings and
 * without any circuit state costs nothing (a cached read per second).
 */
export class Circuits {
  /** Transitions this replica made, by `queue="…",handler="…",to="…"` (for /metrics). */
  readonly transitions = new Map<string, number>();
  private readonly cache = new Map<string, QueueCircuits>();

  constructor(
    private readonly redis: RedisClient,
    private readonly keys: Keys,
    private readonly queues: TaskQueues,
    private readonly logger: Logger,
  ) {
    for (const [name, lua] of Object.entries({
      weftCircuitAdmit: ADMIT,
      weftCircuitFailure: FAILURE,
      weftCircuitSuccess: SUCCESS,
      weftCircuitSet: SET_STATE,
    })) {
      defineScript(redis, name, lua);
    }
  }

  private script(name: string): Script {
    const fn = (this.redis as unknown as Record<string, Script>)[name] as Script;
    return (...args) => fn.call(this.redis, ...args);
  }

  /** Applies the configuration file's circuit breakers (at startup): set, or cleared when a listed queue has none. */
  async apply(policy: Policy): Promise<void> {
    for (const [name, q] of policy.queues) await this.setSettings(name, q.circuitBreaker ?? null);
  }

  /** Sets (or with null, removes) a queue's own circuit breaker settings. */
  async setSettings(queue: string, settings: CircuitSettings | null): Promise<void> {
    if (settings === null) await this.redis.hdel(this.keys.circuitSettings(), queue);
    else await this.redis.hset(this.keys.circuitSettings(), queue, JSON.stringify(settings));
    this.cache.delete(queue);
  }

  /** A queue's own settings (not its workflows' defaults); undefined when it has none. */
  async queueSettings(queue: string): Promise<CircuitSettings | undefined> {
    return (await this.info(queue)).settings;
  }

  /** The settings that apply to a task: its queue's, or else its workflow's default. */
  async settingsFor(task: CompiledTask, loaded: LoadedWorkflow): Promise<CircuitSettings | undefined> {
    return (await this.info(task.queue)).settings ?? workflowDefault(loaded);
  }

  /** Whether a task may start now; a half-open circuit takes it as a probe. */
  async admit(task: CompiledTask, loaded: LoadedWorkflow, member: string): Promise<CircuitVerdict> {
    const info = await this.info(task.queue);
    const settings = info.settings ?? workflowDefault(loaded);
    // With settings, the state is read each time (a circuit another replica just opened holds at
    // once); without, only circuits set by hand can hold, and a replica notices those within a second.
    if (!info.active && settings === undefined) return { held: false };
    const s = settings ?? CIRCUIT_DEFAULTS;
    const reply = (await this.script("weftCircuitAdmit")(
      3,
      this.keys.circuits(task.queue),
      this.keys.circuitProbes(task.queue, "*"),
      this.keys.circuitProbes(task.queue, task.handler),
      Date.now(),
      task.handler,
      member,
      s.openMs,
      s.halfOpenProbes,
      s.openMs,
      s.halfOpenProbes,
    )) as (string | number)[];
    if (reply[0] === "ok") {
      this.count(task.queue, reply.slice(1));
      return { held: false };
    }
    this.count(task.queue, reply.slice(4));
    const circuit = String(reply[1]);
    const until = Number(reply[3]);
    const what =
      circuit === "*"
        ? `circuit breaker of queue "${task.queue}"`
        : `circuit breaker of handler "${circuit}" in queue "${task.queue}"`;
    const reason = reply[2] === "O" ? `${what} is open` : `${what} is half-open: waiting for its probes`;
    return { held: true, until: until > 0 ? until : undefined, reason, queueWide: circuit === "*" };
  }

  /** Counts a failed attempt of a task towards its circuit, when it counts (see countsForCircuit). */
  async failed(
    task: CompiledTask,
    loaded: LoadedWorkflow,
    member: string,
    type: string,
    retryable: boolean,
  ): Promise<void> {
    if (!countsForCircuit(task.retry, type, retryable)) return;
    const settings = await this.settingsFor(task, loaded);
    if (settings === undefined) return;
    const circuit = settings.perHandler ? task.handler : "*";
    const trans = (await this.script("weftCircuitFailure")(
      3,
      this.keys.circuits(task.queue),
      this.keys.circuitFailures(task.queue, circuit),
      this.keys.circuitProbes(task.queue, circuit),
      circuit,
      Date.now(),
      settings.windowMs,
      settings.failureThreshold,
      settings.openMs,
      member,
    )) as string[];
    this.markActive(task.queue);
    this.count(task.queue, trans);
  }

  /** A task of the queue succeeded: a half-open circuit of it closes, and its held tasks come back. */
  async succeeded(task: CompiledTask, loaded: LoadedWorkflow): Promise<void> {
    const info = await this.info(task.queue);
    if (!info.active && (info.settings ?? workflowDefault(loaded)) === undefined) return;
    const { queue, handler } = task;
    const trans = (await this.script("weftCircuitSuccess")(
      5,
      this.keys.circuits(queue),
      this.keys.circuitFailures(queue, "*"),
      this.keys.circuitProbes(queue, "*"),
      this.keys.circuitFailures(queue, handler),
      this.keys.circuitProbes(queue, handler),
      Date.now(),
      handler,
    )) as string[];
    this.count(queue, trans);
  }

  /** Opens (for `openForMs`, or until closed by hand when 0) or closes a circuit by hand. */
  async setState(queue: string, handler: string, open: boolean, openForMs: number): Promise<void> {
    const circuit = handler === "" ? "*" : handler;
    const trans = (await this.script("weftCircuitSet")(
      3,
      this.keys.circuits(queue),
      this.keys.circuitFailures(queue, circuit),
      this.keys.circuitProbes(queue, circuit),
      circuit,
      open ? "O" : "C",
      Date.now(),
      openForMs,
    )) as string[];
    this.markActive(queue);
    this.count(queue, trans);
  }

  /** The circuits of a queue that have a state, ordered by handler (the whole queue's first). */
  async describe(queue: string): Promise<Circuit[]> {
    const raw = await this.redis.hgetall(this.keys.circuits(queue));
    const names = Object.keys(raw).sort((a, b) => (a === "*" ? -1 : b === "*" ? 1 : a < b ? -1 : 1));
    if (names.length === 0) return [];
    const now = Date.now();
    const settings = (await this.info(queue)).settings ?? CIRCUIT_DEFAULTS;
    // Keys of one queue (one hash tag, one slot): one pipeline on a Cluster too.
    const pipeline = this.redis.pipeline();
    for (const c of names) {
      pipeline.zcount(this.keys.circuitFailures(queue, c), now - settings.windowMs, "+inf");
      pipeline.zcount(this.keys.circuitProbes(queue, c), now - settings.openMs, "+inf");
    }
    const rows = (await pipeline.exec()) ?? [];
    for (const [err] of rows) if (err !== null) throw err;
    const counts = rows.map(([, n]) => Number(n ?? 0));
    return names.map((c, i) => {
      const st = JSON.parse(raw[c] as string) as StoredState;
      // An open circuit whose time is up is half-open, whether or not a step looked at it since.
      const lapsed = st.s === "O" && st.u > 0 && now >= st.u;
      const state =
        lapsed || st.s === "H"
          ? CircuitState.HALF_OPEN
          : st.s === "O"
            ? CircuitState.OPEN
            : CircuitState.CLOSED;
      return create(CircuitSchema, {
        handler: c === "*" ? "" : c,
        state,
        since: timestampFromMs(lapsed ? st.u : st.t),
        openUntil: state === CircuitState.OPEN && st.u > 0 ? timestampFromMs(st.u) : undefined,
        failuresInWindow: state === CircuitState.CLOSED ? (counts[2 * i] ?? 0) : 0,
        probesInFlight: state === CircuitState.HALF_OPEN ? (counts[2 * i + 1] ?? 0) : 0,
        manual: st.m === 1,
        openedCount: BigInt(st.n ?? 0),
      });
    });
  }

  /** Why a queued task of this queue and handler waits, or "" when no circuit holds it. */
  async holdReason(queue: string, handler: string): Promise<string> {
    const info = await this.info(queue);
    if (!info.active) return "";
    for (const c of await this.describe(queue)) {
      if (c.handler !== "" && c.handler !== handler) continue;
      const what =
        c.handler === ""
          ? `circuit breaker of queue "${queue}"`
          : `circuit breaker of handler "${c.handler}" in queue "${queue}"`;
      if (c.state === CircuitState.OPEN) return `${what} is open`;
      if (c.state === CircuitState.HALF_OPEN) return `${what} is half-open: waiting for its probes`;
    }
    return "";
  }

  /** Counts the transitions a step made; once a circuit closed, the queue's delayed jobs (the tasks it held) come back. */
  private count(queue: string, trans: readonly (string | number)[]): void {
    for (const t of trans) {
      const [circuit = "", state = ""] = String(t).split("|");
      const to = state === "O" ? "open" : state === "H" ? "half_open" : "closed";
      const handler = circuit === "*" ? "" : circuit;
      const label = `queue="${queue}",handler="${handler}",to="${to}"`;
      this.transitions.set(label, (this.transitions.get(label) ?? 0) + 1);
      this.logger.info({ queue, handler, state: to }, "circuit breaker changed state");
      if (state === "C") {
        this.queues
          .queue(queue)
          .promoteJobs()
          .catch((err: unknown) =>
            logThrottle(this.logger).warn({ err, queue }, "could not bring back the tasks a circuit held"),
          );
      }
    }
  }

  private markActive(queue: string): void {
    const info = this.cache.get(queue);
    if (info !== undefined) info.active = true;
  }

  private async info(queue: string): Promise<QueueCircuits> {
    const cached = this.cache.get(queue);
    const now = Date.now();
    if (cached !== undefined && cached.until > now) return cached;
    // The settings hash and the queue's circuits are in two slots: spread by node on a Cluster.
    const rows = (await anySlotPipeline(this.redis)
      .hget(this.keys.circuitSettings(), queue)
      .hlen(this.keys.circuits(queue))
      .exec()) as [Error | null, unknown][] | null;
    // A pipeline answers each command's error in its place (Redis went away): the call fails with it.
    for (const [err] of rows ?? []) if (err !== null) throw err;
    const raw = (rows?.[0]?.[1] ?? null) as string | null;
    const count = Number(rows?.[1]?.[1] ?? 0);
    const info: QueueCircuits = {
      settings: raw === null ? undefined : (JSON.parse(raw) as CircuitSettings),
      active: Number(count) > 0,
      until: now + CACHE_MS,
    };
    this.cache.set(queue, info);
    return info;
  }
}

/** A workflow's default circuit breaker, resolved once per loaded version. */
const defaults = new WeakMap<LoadedWorkflow, CircuitSettings | null>();

function workflowDefault(loaded: LoadedWorkflow): CircuitSettings | undefined {
  let settings = defaults.get(loaded);
  if (settings === undefined) {
    const cb = loaded.workflow.definition?.defaultCircuitBreaker;
    settings = cb === undefined ? null : resolveCircuitBreaker(cb);
    defaults.set(loaded, settings);
  }
  return settings ?? undefined;
}
