import { create } from "@bufbuild/protobuf";
import type { ConnectRouter, HandlerContext } from "@connectrpc/connect";
import { Code, ConnectError } from "@connectrpc/connect";
import {
  Health,
  type HealthCheckRequest,
  type HealthCheckResponse,
  HealthCheckResponseSchema,
  HealthListResponseSchema,
  HealthCheckResponse_ServingStatus as ServingStatus,
} from "@weft/sdk/gen/health/v1/health_pb.js";

export { ServingStatus };

/** What services may read and report about the daemon's health (see {@link HealthState}). */
export interface HealthReporter {
  /** True while weftd serves: every component is up and it is not shutting down. */
  readonly serving: boolean;
  /**
   * Marks a dependency up or down; weftd reports NOT_SERVING while any is down.
   * The daemon manages the "redis" component itself.
   */
  setComponent(name: string, up: boolean): void;
}

/**
 * The serving status of weftd, shared by the overall service "" and every registered service:
 * SERVING while every component (Redis, …) is up, NOT_SERVING otherwise and from the start of
 * shutdown on.
 */
export class HealthState implements HealthReporter {
  private readonly services = new Set<string>([""]);
  private readonly down = new Set<string>();
  private readonly listeners = new Set<() => void>();
  private shuttingDown = false;

  constructor(services: Iterable<string> = []) {
    for (const name of services) this.services.add(name);
  }

  get serving(): boolean {
    return !this.shuttingDown && this.down.size === 0;
  }

  /** Names of the components currently down. */
  get componentsDown(): string[] {
    return [...this.down];
  }

  /** Every service name health answers for, "" included. */
  get serviceNames(): string[] {
    return [...this.services];
  }

  /** Makes `name` known to Check and Watch. */
  addService(name: string): void {
    if (this.services.has(name)) return;
    this.services.add(name);
    this.notify();
  }

  setComponent(name: string, up: boolean): void {
    const changed = up ? this.down.delete(name) : !this.down.has(name);
    if (!up) this.down.add(name);
    if (changed) this.notify();
  }

  /** Turns every service NOT_SERVING for good. */
  beginShutdown(): void {
    if (this.shuttingDown) return;
    this.shuttingDown = true;
    this.notify();
  }

  /** The status of `service`, or undefined when it is not known. */
  status(service: string): ServingStatus | undefined {
    if (!this.services.has(service)) return undefined;
    return this.serving ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
  }

  /** Calls `listener` after every change; returns the unsubscribe function. */
  onChange(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify(): void {
    for (const listener of [...this.listeners]) listener();
  }
}

/** Registers grpc.health.v1.Health (Check, Watch, List) backed by `state`. */
export function registerHealthService(router: ConnectRouter, state: HealthState): void {
  router.service(Health, {
    check(req: HealthCheckRequest): HealthCheckResponse {
      const status = state.status(req.service);
      if (status === undefined) {
        throw new ConnectError(`unknown service ${JSON.stringify(req.service)}`, Code.NotFound);
      }
      return create(HealthCheckResponseSchema, { status });
    },
    watch: (req: HealthCheckRequest, ctx: HandlerContext) => watchHealth(state, req.service, ctx.signal),
    list() {
      const statuses: Record<string, HealthCheckResponse> = {};
      for (const name of state.serviceNames) {
        statuses[name] = create(HealthCheckResponseSchema, { status: state.status(name) });
      }
      return create(HealthListResponseSchema, { statuses });
    },
  });
}

/**
 * Sends the current status of `service` at once and then each change; an unknown service gets
 * SERVICE_UNKNOWN and the stream stays open, as the gRPC health protocol asks.
 */
async function* watchHealth(
  state: HealthState,
  service: string,
  signal: AbortSignal,
): AsyncGenerator<HealthCheckResponse> {
  let wake: (() => void) | undefined;
  const unsubscribe = state.onChange(() => wake?.());
  const onAbort = () => wake?.();
  signal.addEventListener("abort", onAbort);
  try {
    let last: ServingStatus | undefined;
    while (!signal.aborted) {
      const status = state.status(service) ?? ServingStatus.SERVICE_UNKNOWN;
      if (status !== last) {
        last = status;
        yield create(HealthCheckResponseSchema, { status });
        continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
      });
      wake = undefined;
    }
  } finally {
    unsubscribe();
    signal.removeEventListener("abort", onAbort);
  }
}
