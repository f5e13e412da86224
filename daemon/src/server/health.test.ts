import { createClient, createRouterTransport } from "@connectrpc/connect";
import { Health } from "@weft/sdk/gen/health/v1/health_pb.js";
import { describe, expect, it } from "vitest";
import { HealthState, registerHealthService, ServingStatus } from "./health.js";

function healthClient(state: HealthState) {
  return createClient(
    Health,
    createRouterTransport((router) => registerHealthService(router, state)),
  );
}

describe("HealthState", () => {
  it("is SERVING only while every component is up and until shutdown", () => {
    const state = new HealthState(["weft.v1.WorkerService"]);
    let changes = 0;
    state.onChange(() => changes++);
    expect(state.status("")).toBe(ServingStatus.SERVING);
    state.setComponent("redis", false);
    state.setComponent("redis", false);
    expect(state.status("weft.v1.WorkerService")).toBe(ServingStatus.NOT_SERVING);
    state.setComponent("queues", false);
    state.setComponent("redis", true);
    expect(state.serving).toBe(false);
    expect(state.componentsDown).toEqual(["queues"]);
    state.setComponent("queues", true);
    expect(state.serving).toBe(true);
    state.beginShutdown();
    state.setComponent("redis", true);
    expect(state.status("")).toBe(ServingStatus.NOT_SERVING);
    expect(state.status("unknown")).toBeUndefined();
    expect(changes).toBe(5);
  });
});

describe("Health service", () => {
  it("Check answers the status, NOT_FOUND for unknown services", async () => {
    const state = new HealthState(["weft.v1.WorkflowService"]);
    const client = healthClient(state);
    expect((await client.check({ service: "weft.v1.WorkflowService" })).status).toBe(ServingStatus.SERVING);
    await expect(client.check({ service: "x" })).rejects.toThrow('[not_found] unknown service "x"');
  });

  it("List answers every service", async () => {
    const state = new HealthState(["weft.v1.WorkflowService"]);
    state.setComponent("redis", false);
    const { statuses } = await healthClient(state).list({});
    expect(Object.fromEntries(Object.entries(statuses).map(([k, v]) => [k, v.status]))).toEqual({
      "": ServingStatus.NOT_SERVING,
      "weft.v1.WorkflowService": ServingStatus.NOT_SERVING,
    });
  });

  it("Watch sends the current status, then each change", async () => {
    const state = new HealthState();
    const abort = new AbortController();
    const stream = healthClient(state)
      .watch({ service: "" }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVING);
    state.setComponent("redis", false);
    expect((await stream.next()).value?.status).toBe(ServingStatus.NOT_SERVING);
    state.setComponent("redis", true);
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVING);
    abort.abort();
  });

  it("Watch sends SERVICE_UNKNOWN, then the status once the service is added", async () => {
    const state = new HealthState();
    const abort = new AbortController();
    const stream = healthClient(state)
      .watch({ service: "late" }, { signal: abort.signal })
      [Symbol.asyncIterator]();
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVICE_UNKNOWN);
    state.addService("late");
    expect((await stream.next()).value?.status).toBe(ServingStatus.SERVING);
    abort.abort();
  });
});
