import { createHash } from "node:crypto";
import { Code, ConnectError, createContextKey, type Interceptor } from "@connectrpc/connect";
import type { Logger } from "pino";

/**
 * What a token may do. `worker` is limited to the token's queues. `runs:resume` resumes finished
 * runs; `failures` reads, retries and discards dead letters (operators' scopes, as `admin` is).
 */
export type Scope =
  | "workflows:write"
  | "runs:trigger"
  | "runs:read"
  | "runs:cancel"
  | "runs:resume"
  | "failures"
  | "admin"
  | "worker"
  | "schedules:write";

/** All scopes, for validation. */
export const SCOPES: readonly Scope[] = [
  "workflows:write",
  "runs:trigger",
  "runs:read",
  "runs:cancel",
  "runs:resume",
  "failures",
  "admin",
  "worker",
  "schedules:write",
];

/** A configured token: its name (logged), the SHA-256 of its secret, and what it may do. */
export interface TokenConfig {
  name: string;
  sha256: string;
  scopes: Scope[];
  /** Queues a worker token may use; `*` allows all. */
  queues: string[];
}

/** The caller of an RPC, once its token is checked. */
export interface Principal {
  name: string;
  scopes: ReadonlySet<Scope>;
  queues: ReadonlySet<string>;
}

/** Context key under which the interceptor leaves the caller; undefined when auth is off. */
export const principalKey = createContextKey<Principal | undefined>(undefined, {
  description: "weft principal",
});

/** The scope each Weft RPC needs; procedures not listed (health, reflection) are open. */
const REQUIRED: Record<string, Scope> = {
  "/weft.v1.WorkflowService/SubmitWorkflow": "workflows:write",
  "/weft.v1.WorkflowService/GetWorkflow": "runs:read",
  "/weft.v1.WorkflowService/ListWorkflows": "runs:read",
  "/weft.v1.WorkflowService/Trigger": "runs:trigger",
  "/weft.v1.WorkflowService/BatchTrigger": "runs:trigger",
  "/weft.v1.WorkflowService/GetRun": "runs:read",
  "/weft.v1.WorkflowService/GetTaskRun": "runs:read",
  "/weft.v1.WorkflowService/ListRuns": "runs:read",
  "/weft.v1.WorkflowService/WatchRun": "runs:read",
  "/weft.v1.WorkflowService/Cancel": "runs:cancel",
  "/weft.v1.WorkflowService/WatchRuns": "runs:read",
  "/weft.v1.WorkerService/PollTask": "worker",
  "/weft.v1.WorkerService/Heartbeat": "worker",
  "/weft.v1.WorkerService/CompleteTask": "worker",
  "/weft.v1.WorkerService/CompleteTasks": "worker",
  "/weft.v1.WorkerService/FailTask": "worker",
  "/weft.v1.WorkerService/Work": "worker",
  "/weft.v1.AdminService/GetQueue": "admin",
  "/weft.v1.AdminService/ListQueues": "admin",
  "/weft.v1.AdminService/UpdateQueue": "admin",
  "/weft.v1.AdminService/SetCircuitState": "admin",
  "/weft.v1.FailureService/ListDeadLetters": "failures",
  "/weft.v1.FailureService/GetDeadLetter": "failures",
  "/weft.v1.FailureService/RetryDeadLetter": "failures",
  "/weft.v1.FailureService/DiscardDeadLetter": "failures",
  "/weft.v1.FailureService/RetryDeadLetters": "failures",
  "/weft.v1.FailureService/DiscardDeadLetters": "failures",
  "/weft.v1.FailureService/ResumeRun": "runs:resume",
  // A schedule starts runs on its own for as long as it lives: creating and driving one is an
  // operator's act, apart from starting runs (runs:trigger). Reading one is like reading runs.
  "/weft.v1.ScheduleService/CreateSchedule": "schedules:write",
  "/weft.v1.ScheduleService/UpdateSchedule": "schedules:write",
  "/weft.v1.ScheduleService/DeleteSchedule": "schedules:write",
  "/weft.v1.ScheduleService/PauseSchedule": "schedules:write",
  "/weft.v1.ScheduleService/ResumeSchedule": "schedules:write",
  "/weft.v1.ScheduleService/TriggerSchedule": "schedules:write",
  "/weft.v1.ScheduleService/BackfillSchedule": "schedules:write",
  "/weft.v1.ScheduleService/GetSchedule": "runs:read",
  "/weft.v1.ScheduleService/ListSchedules": "runs:read",
};

/** Services that can be left open to callers without a token. */
export type PublicService = "health" | "reflection";

const PUBLIC_SERVICE_NAMES: Record<PublicService, string[]> = {
  health: ["grpc.health.v1.Health"],
  reflection: ["grpc.reflection.v1.ServerReflection", "grpc.reflection.v1alpha.ServerReflection"],
};

/** The SHA-256 (hex) of a token, as the configuration file stores it. */
export function hashToken(token: string): string {
  return createHash("sha256").update(token).digest("hex");
}

/**
 * Checks the bearer token of a call: returns the caller, or undefined for a
 * service left open; throws UNAUTHENTICATED for a missing or unknown token and
 * PERMISSION_DENIED, naming the scope, for a known token without the call's
 * scope. `service` is the service's full name, `procedure` is
 * "/<service>/<method>".
 */
export type TokenCheck = (
  service: string,
  procedure: string,
  authorization: string | undefined,
) => Principal | undefined;

/** The token check of the configured tokens, shared by the Connect interceptor and weftd's direct gRPC path. */
export function tokenCheck(
  tokens: TokenConfig[],
  logger: Logger,
  publicServices: readonly PublicService[] = ["health", "reflection"],
): TokenCheck {
  const open = new Set<string>(publicServices.flatMap((s) => PUBLIC_SERVICE_NAMES[s]));
  const byHash = new Map(
    tokens.map((t) => [
      t.sha256.toLowerCase(),
      { name: t.name, scopes: new Set(t.scopes), queues: new Set(t.queues) } satisfies Principal,
    ]),
  );
  return (service, procedure, authorization) => {
    const scope = REQUIRED[procedure];
    if (scope === undefined && open.has(service)) return undefined;
    if (scope === undefined && service.startsWith("weft.")) {
      // Fail closed: a Weft RPC added without a scope is refused, never open to any token.
      throw new ConnectError(`${procedure.slice(1)} has no scope configured`, Code.PermissionDenied);
    }
    const header = authorization ?? "";
    const match = /^Bearer\s+(\S+)$/i.exec(header);
    if (match === null) {
      throw new ConnectError(
        "missing bearer token: send the metadata 'authorization: Bearer <token>'",
        Code.Unauthenticated,
      );
    }
    const principal = byHash.get(hashToken(match[1] as string));
    if (principal === undefined) throw new ConnectError("unknown token", Code.Unauthenticated);
    if (scope !== undefined && !principal.scopes.has(scope)) {
      logger.info({ token: principal.name, scope, procedure }, "permission denied");
      throw new ConnectError(
        `token "${principal.name}" lacks the scope "${scope}" needed by ${procedure.slice(1)}`,
        Code.PermissionDenied,
      );
    }
    return principal;
  };
}

/**
 * Checks the bearer token of every Weft RPC served by Connect (see {@link tokenCheck}). The caller is
 * left in the context for the per-queue and per-lease checks of the worker calls.
 */
export function authInterceptor(check: TokenCheck): Interceptor {
  return (next) => async (req) => {
    const principal = check(
      req.service.typeName,
      `/${req.service.typeName}/${req.method.name}`,
      req.header.get("authorization") ?? undefined,
    );
    if (principal !== undefined) req.contextValues.set(principalKey, principal);
    return next(req);
  };
}

/** Throws PERMISSION_DENIED unless the caller may use the queue (no caller: auth is off). */
export function checkQueue(principal: Principal | undefined, queue: string): void {
  if (principal === undefined || principal.queues.has("*") || principal.queues.has(queue)) return;
  throw new ConnectError(`token "${principal.name}" may not use queue "${queue}"`, Code.PermissionDenied);
}

/** Bidirectional streams counted with the server streams: watches (Work streams are not). */
const WATCH_STREAMS = new Set(["WatchRuns"]);

/**
 * Limits the server streams (WatchRun) and WatchRuns streams one client — one token — keeps open
 * at once; one more gets RESOURCE_EXHAUSTED naming the limit. Without
 * authentication there is no client identity to count by (an address is
 * shared behind a proxy or on one host), and only the per-replica watcher
 * limit applies. Connect's calls pass {@link streamLimitInterceptor}; weftd's direct gRPC path
 * calls {@link StreamLimit.acquire} itself.
 */
export class StreamLimit {
  private readonly open = new Map<string, number>();

  constructor(readonly maxPerClient: number) {}

  /** Counts one more stream of the caller (none: auth is off); returns what ends it (once). */
  acquire(principal: Principal | undefined): () => void {
    if (principal === undefined) return () => {};
    const client = `token "${principal.name}"`;
    const count = this.open.get(client) ?? 0;
    if (count >= this.maxPerClient) {
      throw new ConnectError(
        `${client} already has ${count} open streams (limit ${this.maxPerClient} per client)`,
        Code.ResourceExhausted,
      );
    }
    this.open.set(client, count + 1);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const left = (this.open.get(client) ?? 1) - 1;
      if (left === 0) this.open.delete(client);
      else this.open.set(client, left);
    };
  }
}

/** Applies a {@link StreamLimit} to the watch streams Connect serves. */
export function streamLimitInterceptor(limit: StreamLimit): Interceptor {
  return (next) => async (req) => {
    if ((req.method.methodKind as string) !== "server_streaming" && !WATCH_STREAMS.has(req.method.name))
      return next(req);
    const release = limit.acquire(req.contextValues.get(principalKey));
    let res: Awaited<ReturnType<typeof next>>;
    try {
      res = await next(req);
    } catch (err) {
      release();
      throw err;
    }
    if (!res.stream) {
      release();
      return res;
    }
    const messages = res.message;
    return {
      ...res,
      message: (async function* () {
        try {
          yield* messages;
        } finally {
          release();
        }
      })(),
    };
  };
}
