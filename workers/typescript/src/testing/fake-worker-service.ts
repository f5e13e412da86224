import { EventEmitter } from "node:events";
import { createServer, type Http2Server, type ServerHttp2Session } from "node:http2";
import type { AddressInfo } from "node:net";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import { durationMs } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError, type ConnectRouter } from "@connectrpc/connect";
import { connectNodeAdapter } from "@connectrpc/connect-node";
import {
  type CompleteTaskRequest,
  type CompleteTaskResultSchema,
  type CompleteTasksRequest,
  type FailTaskRequest,
  type HeartbeatRequest,
  type HeartbeatResponseSchema,
  type PollTaskRequest,
  type TaskAssignment,
  TaskAssignmentSchema,
  WorkerService,
} from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { deferred, within } from "./async.js";

/** The RPCs of WorkerService. */
export type Rpc = "PollTask" | "Heartbeat" | "CompleteTask" | "CompleteTasks" | "FailTask";

/** How a {@link FakeWorkerService} behaves. */
export interface FakeOptions {
  /**
   * Whether CompleteTasks is served; false: it answers UNIMPLEMENTED, as a weftd older than it does.
   * @defaultValue true
   */
  completeTasks?: boolean;
}

type HeartbeatAnswer = MessageInitShape<typeof HeartbeatResponseSchema>;
type CompleteTaskResultInit = MessageInitShape<typeof CompleteTaskResultSchema>;

let leaseCounter = 0;

/**
 * An in-memory WorkerService on an HTTP/2 server on port 0, for testing the worker runtime: it
 * hands out enqueued assignments to polls, records every call, and injects errors on demand.
 */
export class FakeWorkerService {
  readonly polls: PollTaskRequest[] = [];
  readonly heartbeats: HeartbeatRequest[] = [];
  /** Completions recorded, by CompleteTask or as an item of CompleteTasks answered OK. */
  readonly completions: CompleteTaskRequest[] = [];
  /** The lease ids of each CompleteTasks call that got past the call-level faults, in call order. */
  readonly completeTasksCalls: string[][] = [];
  readonly failures: FailTaskRequest[] = [];
  /** The `authorization` header of each poll. */
  readonly authorizations: (string | null)[] = [];
  /** The RPC named by every request received, served or not, in arrival order. */
  readonly requests: string[] = [];
  /** Polls waiting for a task right now, and the most seen at once. */
  activePolls = 0;
  maxActivePolls = 0;
  /** Answers each heartbeat; may throw a ConnectError. */
  onHeartbeat: (request: HeartbeatRequest) => HeartbeatAnswer = () => ({});

  private readonly pending: TaskAssignment[] = [];
  private readonly faults = new Map<Rpc, Code[]>();
  private readonly completionFaults = new Map<string, Code[]>();
  private completeTasksHold: Promise<void> | undefined;
  private readonly changes = new EventEmitter();
  private readonly sessions = new Set<ServerHttp2Session>();
  private readonly server: Http2Server;
  private port = 0;

  private constructor(private readonly options: FakeOptions) {
    this.changes.setMaxListeners(0);
    this.server = createServer(connectNodeAdapter({ routes: (router) => this.routes(router) }));
    this.server.on("stream", (_stream, headers) => {
      this.requests.push(String(headers[":path"]).split("/").pop() ?? "");
    });
    this.server.on("session", (session) => {
      this.sessions.add(session);
      session.once("close", () => this.sessions.delete(session));
    });
  }

  /** Starts a fake on a free port. */
  static async start(options: FakeOptions = {}): Promise<FakeWorkerService> {
    const fake = new FakeWorkerService(options);
    await fake.listen(0);
    return fake;
  }

  /** `host:port` to give the worker. */
  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Queues an assignment for the next poll; returns it with the defaults filled in. */
  enqueue(init: MessageInitShape<typeof TaskAssignmentSchema> = {}): TaskAssignment {
    leaseCounter++;
    const assignment = create(TaskAssignmentSchema, {
      leaseId: `lease-${leaseCounter}`,
      runId: `run-${leaseCounter}`,
      taskId: "task",
      workflow: "wf",
      workflowVersion: 1,
      attempt: 1,
      maxAttempts: 3,
      ...init,
    });
    this.pending.push(assignment);
    this.changed();
    return assignment;
  }

  /** Makes the next `times` calls of `rpc` fail with `code`. */
  failNext(rpc: Rpc, code: Code, times = 1): void {
    this.faults.set(rpc, [...(this.faults.get(rpc) ?? []), ...Array<Code>(times).fill(code)]);
  }

  /** Makes the next `times` CompleteTasks items of `leaseId` answer `code`. */
  failCompletion(leaseId: string, code: Code, times = 1): void {
    const queued = this.completionFaults.get(leaseId) ?? [];
    this.completionFaults.set(leaseId, [...queued, ...Array<Code>(times).fill(code)]);
  }

  /**
   * Makes the next CompleteTasks call wait, once recorded, until the returned function is called:
   * the worker sees it in flight.
   */
  holdCompleteTasks(): () => void {
    const release = deferred();
    this.completeTasksHold = release.promise;
    return release.resolve;
  }

  /** Waits until `check` returns something other than `undefined` or `false`, and returns it. */
  async waitFor<T>(what: string, check: () => T | undefined | false, timeoutMs = 3_000): Promise<T> {
    let onChange: (() => void) | undefined;
    const satisfied = new Promise<T>((resolve) => {
      onChange = () => {
        const value = check();
        if (value !== undefined && value !== false) {
          resolve(value);
        }
      };
      this.changes.on("change", onChange);
      onChange();
    });
    try {
      return await within(satisfied, what, timeoutMs);
    } finally {
      if (onChange) {
        this.changes.off("change", onChange);
      }
    }
  }

  /** Shuts the server down and drops every connection, as a crashed daemon would. */
  async stop(): Promise<void> {
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    for (const session of this.sessions) {
      session.destroy();
    }
    await closed;
  }

  /** Listens again on the same port after {@link stop}. */
  async restart(): Promise<void> {
    await this.listen(this.port);
  }

  private async listen(port: number): Promise<void> {
    await new Promise<void>((resolve, reject) => {
      this.server.once("error", reject);
      this.server.listen(port, "127.0.0.1", () => {
        this.server.off("error", reject);
        resolve();
      });
    });
    this.port = (this.server.address() as AddressInfo).port;
  }

  private routes(router: ConnectRouter): void {
    router.service(WorkerService, {
      pollTask: async (request, context) => {
        this.activePolls++;
        this.maxActivePolls = Math.max(this.maxActivePolls, this.activePolls);
        try {
          this.authorizations.push(context.requestHeader.get("authorization"));
          this.record("PollTask", this.polls, request);
          const waitMs = request.wait === undefined ? 0 : durationMs(request.wait);
          const [assignment, ...moreAssignments] = await this.take(waitMs, request.maxTasks, context.signal);
          return { assignment, moreAssignments };
        } finally {
          this.activePolls--;
          this.changed();
        }
      },
      heartbeat: (request) => {
        this.record("Heartbeat", this.heartbeats, request);
        return this.onHeartbeat(request);
      },
      completeTask: (request) => {
        this.record("CompleteTask", this.completions, request);
        return {};
      },
      // Without CompleteTasks the router answers it UNIMPLEMENTED, as an older weftd does.
      ...(this.options.completeTasks === false
        ? {}
        : { completeTasks: (request: CompleteTasksRequest) => this.completeTasks(request) }),
      failTask: (request) => {
        this.record("FailTask", this.failures, request);
        return { willRetry: request.retryable !== false };
      },
    });
  }

  /** Answers each completion OK, or with the fault queued for its lease; waits while held. */
  private async completeTasks(request: CompleteTasksRequest): Promise<{ results: CompleteTaskResultInit[] }> {
    this.record(
      "CompleteTasks",
      this.completeTasksCalls,
      request.completions.map((c) => c.leaseId),
    );
    const results = request.completions.map((completion): CompleteTaskResultInit => {
      const { leaseId } = completion;
      const code = this.completionFaults.get(leaseId)?.shift();
      if (code === undefined) {
        this.completions.push(completion);
        return { leaseId, code: 0 };
      }
      return { leaseId, code, message: `injected ${Code[code]}` };
    });
    this.changed();
    const hold = this.completeTasksHold;
    this.completeTasksHold = undefined;
    await hold;
    return { results };
  }

  /** Records a call, or throws the fault queued for it (a faulted call is not recorded). */
  private record<T>(rpc: Rpc, calls: T[], request: T): void {
    const fault = this.faults.get(rpc)?.shift();
    if (fault !== undefined) {
      this.changed();
      throw new ConnectError(`injected ${Code[fault]}`, fault);
    }
    calls.push(request);
    this.changed();
  }

  /** Waits for the first assignment only, then adds those already pending, up to `maxTasks`. */
  private async take(waitMs: number, maxTasks: number, signal: AbortSignal): Promise<TaskAssignment[]> {
    const deadline = Date.now() + waitMs;
    while (!signal.aborted) {
      if (this.pending.length > 0) {
        return this.pending.splice(0, Math.max(maxTasks, 1));
      }
      const remaining = deadline - Date.now();
      if (remaining <= 0) {
        return [];
      }
      await new Promise<void>((resolve) => {
        const done = (): void => {
          clearTimeout(timer);
          this.changes.off("change", done);
          signal.removeEventListener("abort", done);
          resolve();
        };
        const timer = setTimeout(done, remaining);
        this.changes.on("change", done);
        signal.addEventListener("abort", done);
      });
    }
    return [];
  }

  private changed(): void {
    this.changes.emit("change");
  }
}
