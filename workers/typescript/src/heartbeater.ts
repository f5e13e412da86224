import type { JsonValue } from "@bufbuild/protobuf";
import { durationMs, timestampMs, type Value } from "@bufbuild/protobuf/wkt";
import type { TaskAssignment } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import type { DaemonHealth } from "./daemon-health.js";
import { toProtoValue } from "./json.js";
import { isLeaseLost } from "./rpc-errors.js";
import type { WorkerClient } from "./worker-client.js";

/** Used when an assignment carries neither a heartbeat timeout nor a lease deadline. */
const fallbackIntervalMs = 10_000;
const minimumIntervalMs = 10;

/** What a {@link Heartbeater} needs and whom it tells about the lease. */
export interface HeartbeaterDeps {
  client: WorkerClient;
  leaseId: string;
  intervalMs: number;
  health: DaemonHealth;
  /** Called when the daemon answers `cancel_requested`. */
  onCancelRequested: () => void;
  /** Called when the daemon no longer knows the lease (FAILED_PRECONDITION or NOT_FOUND). */
  onLeaseLost: (err: unknown) => void;
}

/** Keeps one lease alive while its handler runs and relays what the daemon answers. */
export class Heartbeater {
  private timer: NodeJS.Timeout | undefined;
  private progress: Value | undefined;
  private stopped = false;

  constructor(private readonly deps: HeartbeaterDeps) {}

  /** Starts automatic heartbeats every `intervalMs`. */
  start(): void {
    this.schedule();
  }

  /** Stops heartbeating; answers to calls in flight are ignored. */
  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  /**
   * Sends a heartbeat now. `progress` is kept and repeated by later automatic heartbeats.
   *
   * @throws TypeError when `progress` is not JSON-serialisable.
   */
  async beat(progress?: JsonValue): Promise<void> {
    if (progress !== undefined) {
      this.progress = toProtoValue(progress);
    }
    if (!this.stopped) {
      await this.send();
    }
  }

  private schedule(): void {
    if (this.stopped) {
      return;
    }
    this.timer = setTimeout(() => {
      void this.send().then(() => this.schedule());
    }, this.deps.intervalMs);
  }

  /** Never rejects: every outcome is relayed to the callbacks or the health tracker. */
  private async send(): Promise<void> {
    const { client, leaseId, intervalMs, health } = this.deps;
    try {
      const response = await client.heartbeat(
        { leaseId, ...(this.progress === undefined ? {} : { progress: this.progress }) },
        { timeoutMs: Math.max(intervalMs, 1_000) },
      );
      health.ok();
      if (response.cancelRequested && !this.stopped) {
        this.deps.onCancelRequested();
      }
    } catch (err) {
      if (this.stopped) {
        return;
      }
      if (isLeaseLost(err)) {
        this.deps.onLeaseLost(err);
        return;
      }
      // The next automatic heartbeat retries; the lease outlives a couple of missed ones.
      health.failed("Heartbeat", err);
    }
  }
}

/** The automatic heartbeat interval: `override`, else a third of the heartbeat timeout. */
export function heartbeatIntervalMs(assignment: TaskAssignment, override: number | undefined): number {
  if (override !== undefined) {
    return override;
  }
  let window = 0;
  if (assignment.heartbeatTimeout !== undefined) {
    window = durationMs(assignment.heartbeatTimeout);
  } else if (assignment.leaseDeadline !== undefined) {
    window = timestampMs(assignment.leaseDeadline) - Date.now();
  }
  return window > 0 ? Math.max(window / 3, minimumIntervalMs) : fallbackIntervalMs;
}
