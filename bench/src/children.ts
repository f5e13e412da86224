import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import type {
  BullmqWorkerChildConfig,
  EngineAloneChildConfig,
  FromChild,
  PeerClientChildConfig,
  PeerShape,
  PeerWorkerChildConfig,
  ToChild,
  WeftWorkerChildConfig,
} from "./child/protocol.js";
import { BENCH_DIR, REPO_ROOT, TSX_LOADER } from "./paths.js";

const live = new Set<ChildProcess>();
process.once("exit", () => {
  for (const child of live) child.kill("SIGKILL");
});

type Waiter = { type: FromChild["t"]; resolve: (m: FromChild) => void; reject: (e: Error) => void };

/** A worker child process (Weft or raw BullMQ) driven over IPC. */
export class WorkerChild {
  private readonly waiters: Waiter[] = [];
  private output = "";

  private constructor(
    readonly kind: string,
    private readonly child: ChildProcess,
  ) {
    child.on("message", (raw) => {
      const message = raw as FromChild;
      if (message.t === "error") {
        this.output += `${message.message}\n`;
        // A peer client's shape that failed: its caller hears it now rather than at its timeout.
        const i = this.waiters.findIndex((w) => w.type === "went");
        if (i >= 0) this.waiters.splice(i, 1)[0]?.reject(new Error(`${kind} child: ${message.message}`));
        return;
      }
      const i = this.waiters.findIndex((w) => w.type === message.t);
      if (i >= 0) this.waiters.splice(i, 1)[0]?.resolve(message);
    });
    const keep = (chunk: Buffer) => {
      this.output = (this.output + chunk.toString()).slice(-20_000);
    };
    child.stdout?.on("data", keep);
    child.stderr?.on("data", keep);
    child.once("exit", (code, signal) => {
      live.delete(child);
      for (const w of this.waiters.splice(0))
        w.reject(new Error(`${kind} child exited (${signal ?? code}):\n${this.output}`));
    });
  }

  /** Forks `bench/src/child/<script>.ts` with its JSON configuration and waits for "ready". */
  static async start(
    script: string,
    config: object,
    kind: string,
    nodeFlags: string[] = [],
  ): Promise<WorkerChild> {
    const child = fork(`${BENCH_DIR}src/child/${script}.ts`, [], {
      cwd: REPO_ROOT,
      execArgv: [...nodeFlags, "--import", TSX_LOADER],
      env: { ...process.env, BENCH_CHILD: JSON.stringify(config), WEFT_LOG_LEVEL: "warn" },
      stdio: ["ignore", "pipe", "pipe", "ipc"],
    });
    live.add(child);
    const wrapper = new WorkerChild(kind, child);
    await wrapper.next("ready", 30_000);
    return wrapper;
  }

  /** Starts a Weft worker child (polling unless `deferStart`); `nodeFlags` go before the script. */
  static weft(config: WeftWorkerChildConfig, nodeFlags: string[] = []): Promise<WorkerChild> {
    return WorkerChild.start("weft-worker", config, "weft worker", nodeFlags);
  }

  /** Starts a raw BullMQ worker child. */
  static bullmq(config: BullmqWorkerChildConfig): Promise<WorkerChild> {
    return WorkerChild.start("bullmq-worker", config, "bullmq worker");
  }

  /** Starts the engine child: Weft's engine with in-process task slots (scenario 1's diagnostic). */
  static engineAlone(config: EngineAloneChildConfig): Promise<WorkerChild> {
    return WorkerChild.start("engine-alone", config, "engine alone");
  }

  /** Starts a worker of the peer scenario (Weft's or BullMQ's). */
  static peerWorker(config: PeerWorkerChildConfig): Promise<WorkerChild> {
    return WorkerChild.start("peer-worker", config, `${config.kind} peer worker`);
  }

  /** Starts a client of the peer scenario (@weft/sdk, or FlowProducer and QueueEvents). */
  static peerClient(config: PeerClientChildConfig): Promise<WorkerChild> {
    return WorkerChild.start("peer-client", config, `${config.kind} peer client`);
  }

  /** Peer client: runs one shape; resolves with its duration (and latency samples) once it is done. */
  async go(shape: PeerShape, timeoutMs: number): Promise<Extract<FromChild, { t: "went" }>> {
    const went = this.next("went", timeoutMs);
    this.send({ t: "go", shape });
    return went;
  }

  /** Engine child: runs one run of `tasks` no-op tasks; resolves with its duration in ms. */
  async runEngine(tasks: number, timeoutMs: number): Promise<number> {
    const ran = this.next("ran", timeoutMs);
    this.send({ t: "run", tasks });
    return (await ran).ms;
  }

  get pid(): number {
    return this.child.pid as number;
  }

  /** Resolves with the next message of `type`; rejects after `timeoutMs`. */
  next<T extends FromChild["t"]>(type: T, timeoutMs: number): Promise<Extract<FromChild, { t: T }>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        const i = this.waiters.indexOf(waiter);
        if (i >= 0) this.waiters.splice(i, 1);
        reject(new Error(`${this.kind} child: no "${type}" within ${timeoutMs} ms\n${this.output}`));
      }, timeoutMs);
      const waiter: Waiter = {
        type,
        resolve: (m) => {
          clearTimeout(timer);
          resolve(m as Extract<FromChild, { t: T }>);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      };
      this.waiters.push(waiter);
    });
  }

  send(message: ToChild): void {
    this.child.send(message);
  }

  /**
   * Arms the completion counter for `n` completions; resolves once armed, with the promise of the
   * completion times (wall-clock ms of the first and last). Wrapped in an object: an async function
   * returning a bare promise would wait for it.
   */
  async expect(n: number, timeoutMs: number): Promise<{ done: Promise<{ first: number; last: number }> }> {
    const armed = this.next("armed", 10_000);
    const done = this.next("done", timeoutMs);
    done.catch(() => {});
    this.send({ t: "expect", n });
    await armed;
    return { done };
  }

  /** Starts polling (deferred start) and waits until it polls. */
  async startPolling(): Promise<void> {
    const ready = this.next("ready", 10_000);
    this.send({ t: "start" });
    await ready;
  }

  /** Asks the child to close and exit; kills it after `timeoutMs`. */
  async stop(timeoutMs = 10_000): Promise<void> {
    if (this.child.exitCode !== null || this.child.signalCode !== null) return;
    const exited = once(this.child, "exit");
    try {
      this.send({ t: "stop" });
    } catch {
      // IPC already closed.
    }
    const timer = setTimeout(() => this.child.kill("SIGKILL"), timeoutMs);
    await exited;
    clearTimeout(timer);
  }
}
