import { execFile } from "node:child_process";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { FileDescriptorProtoSchema } from "@bufbuild/protobuf/wkt";
import { createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-node";
import { Health, HealthCheckResponse_ServingStatus as Status } from "@weft/sdk/gen/health/v1/health_pb.js";
import { AdminService } from "@weft/sdk/gen/weft/v1/admin_service_pb.js";
import { FailureService } from "@weft/sdk/gen/weft/v1/failure_service_pb.js";
import { ScheduleService } from "@weft/sdk/gen/weft/v1/schedule_service_pb.js";
import { WorkerService } from "@weft/sdk/gen/weft/v1/worker_service_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  BUF_BIN,
  connectJson,
  grpc,
  grpcClient,
  grpcError,
  grpcServerStream,
  grpcUnary,
  type RedisServer,
  reflect,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
  within,
} from "./support/index.js";

const WEFT_SERVICES = [
  WorkflowService.typeName,
  WorkerService.typeName,
  AdminService.typeName,
  FailureService.typeName,
  ScheduleService.typeName,
];

let redis: RedisServer;
let weftd: WeftdProcess;
let client: grpc.Client;

beforeAll(async () => {
  redis = await startTestRedis();
  weftd = await spawnWeftd({ redisUrl: redis.url });
  client = grpcClient(weftd.address);
});

afterAll(async () => {
  client?.close();
  await weftd?.kill();
  await redis?.close();
});

describe("health", () => {
  it.each(["", ...WEFT_SERVICES])("reports SERVING for %j", async (service) => {
    const response = await grpcUnary(client, Health.method.check, { service });
    expect(response.status).toBe(Status.SERVING);
  });

  it("answers NOT_FOUND for an unknown service", async () => {
    const err = await grpcError(grpcUnary(client, Health.method.check, { service: "weft.v1.NoSuchService" }));
    expect(err.code).toBe(grpc.status.NOT_FOUND);
    expect(err.details).toBe('unknown service "weft.v1.NoSuchService"');
  });

  it("Watch sends SERVICE_UNKNOWN for an unknown service and keeps the stream open", async () => {
    const stream = grpcServerStream(client, Health.method.watch, { service: "weft.v1.NoSuchService" });
    const first = await within(
      new Promise((resolve, reject) => {
        stream.once("data", resolve);
        stream.once("error", reject);
      }),
      10_000,
      "the first Watch message",
    );
    expect(first).toMatchObject({ status: Status.SERVICE_UNKNOWN });
    stream.cancel();
  });

  it("serves /healthz and /metrics on the metrics port", async () => {
    const healthz = await fetch(`${weftd.metricsUrl}/healthz`);
    expect(healthz.status).toBe(200);
    expect(await healthz.text()).toBe("ok\n");
    const metrics = await (await fetch(`${weftd.metricsUrl}/metrics`)).text();
    expect(metrics).toContain("# TYPE process_uptime_seconds gauge");
    expect(metrics).toMatch(/^process_uptime_seconds \d/m);
    expect(metrics).toMatch(/^weft_up 1$/m);
    expect(metrics).toMatch(/^weft_redis_up 1$/m);
    expect(metrics).toContain("# TYPE weft_jobs_fetched_total counter");
    expect(metrics).toMatch(/^weft_jobs_fetched_total\{via="poll"\} \d+$/m);
    expect(metrics).toMatch(/^weft_jobs_fetched_total\{via="completion"\} \d+$/m);
    expect(metrics).toMatch(/^weft_held_jobs_returned_total \d+$/m);
    expect(metrics).toContain("# TYPE weft_task_queues_open gauge");
    expect(metrics).toMatch(/^weft_task_queues_open \d+$/m);
  });

  it("refuses a poll of one task queue more than --max-open-queues, and counts the open ones", async () => {
    const limited = await spawnWeftd({ redisUrl: redis.url, args: ["--max-open-queues", "1"] });
    const peer = grpcClient(limited.address);
    try {
      const poll = (queue: string) =>
        grpcUnary(peer, WorkerService.method.pollTask, { queue, workerId: "w" });
      expect((await poll("first")).assignment).toBeUndefined();
      const err = await grpcError(poll("second"));
      expect([err.code, err.details]).toEqual([
        grpc.status.RESOURCE_EXHAUSTED,
        'queue: "second" would be one task queue more than this replica keeps open at once (--max-open-queues 1); a queue no poll used for 120 s closes',
      ]);
      const metrics = await (await fetch(`${limited.metricsUrl}/metrics`)).text();
      expect(metrics).toMatch(/^weft_task_queues_open 1$/m);
    } finally {
      peer.close();
      await limited.stop();
    }
  });
});

describe("protocols on one port", () => {
  // The error path uses a Weft method that rejects a malformed lease id before touching any state;
  // its message holds a ":", which grpc-js shows as written only thanks to server.ts's re-encoding.
  const badLease = "lease_id: is not a lease id issued by PollTask";

  it("serves gRPC over HTTP/2 (grpc-js): health Check succeeds, a Weft method fails with its code", async () => {
    expect((await grpcUnary(client, Health.method.check, { service: "" })).status).toBe(Status.SERVING);
    const err = await grpcError(grpcUnary(client, WorkerService.method.heartbeat, { leaseId: "lease-1" }));
    expect(err.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(err.details).toBe(badLease);
  });

  it("serves the Connect protocol with JSON over HTTP/1.1 (fetch)", async () => {
    const ok = await connectJson(weftd.baseUrl, "grpc.health.v1.Health/Check", {
      service: "weft.v1.WorkflowService",
    });
    expect(ok).toEqual({ status: 200, body: { status: "SERVING" } });
    const failed = await connectJson(weftd.baseUrl, "weft.v1.WorkerService/Heartbeat", {
      leaseId: "lease-1",
    });
    expect(failed.status).toBe(400);
    expect(failed.body).toMatchObject({ code: "invalid_argument", message: badLease });
  });

  it("answers gRPC over HTTP/1.1 with 505 and a line saying why, and serves gRPC-Web there", async () => {
    for (const contentType of ["application/grpc", "application/grpc+proto"]) {
      const res = await fetch(`${weftd.baseUrl}/grpc.health.v1.Health/Check`, {
        method: "POST",
        headers: { "content-type": contentType },
        body: new Uint8Array(5),
        signal: AbortSignal.timeout(10_000),
      });
      expect([res.status, res.headers.get("content-type"), await res.text()], contentType).toEqual([
        505,
        "text/plain; charset=utf-8",
        "gRPC requires HTTP/2: connect with HTTP/2 (with prior knowledge on a cleartext port), " +
          "or use gRPC-Web or Connect over HTTP/1.1\n",
      ]);
    }
    const grpcWeb = createClient(
      Health,
      createGrpcWebTransport({ baseUrl: weftd.baseUrl, httpVersion: "1.1" }),
    );
    expect((await grpcWeb.check({ service: "" })).status).toBe(Status.SERVING);
  });
});

describe("server reflection", () => {
  const allServices = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
    ...WEFT_SERVICES,
  ].sort();

  it.each(["v1", "v1alpha"] as const)("lists every served service (%s, grpc-js client)", async (version) => {
    const [response] = await reflect(weftd.address, version, [{ list_services: "" }]);
    expect(response?.message_response).toBe("list_services_response");
    expect(response?.list_services_response?.service.map((s) => s.name).sort()).toEqual(allServices);
  });

  it("returns decodable descriptors of the file containing weft.v1.WorkflowService and its imports", async () => {
    const [response] = await reflect(weftd.address, "v1", [
      { file_containing_symbol: "weft.v1.WorkflowService" },
    ]);
    const files = (response?.file_descriptor_response?.file_descriptor_proto ?? []).map((bytes) =>
      fromBinary(FileDescriptorProtoSchema, bytes),
    );
    expect(files[0]?.name).toBe("weft/v1/workflow_service.proto");
    const service = files[0]?.service.find((s) => s.name === "WorkflowService");
    expect(service?.method.map((m) => m.name)).toEqual(WorkflowService.methods.map((m) => m.name));
    const names = new Set(files.map((f) => f.name));
    for (const file of files) for (const dependency of file.dependency) expect(names).toContain(dependency);
  });

  it.each([
    ["a method", "weft.v1.WorkerService.PollTask", "weft/v1/worker_service.proto"],
    ["a message", "grpc.health.v1.HealthCheckRequest", "health/v1/health.proto"],
    ["a nested enum", "grpc.health.v1.HealthCheckResponse.ServingStatus", "health/v1/health.proto"],
    // The detail of an INVALID_ARGUMENT: grpcurl asks for it to print the error.
    ["an error detail", "google.rpc.BadRequest", "google/rpc/error_details.proto"],
  ])("finds the file containing %s", async (_kind, symbol, file) => {
    const [response] = await reflect(weftd.address, "v1alpha", [{ file_containing_symbol: symbol }]);
    const first = response?.file_descriptor_response?.file_descriptor_proto[0];
    expect(first && fromBinary(FileDescriptorProtoSchema, first).name).toBe(file);
  });

  it("answers NOT_FOUND for unknown symbols, files and extensions", async () => {
    const responses = await reflect(weftd.address, "v1", [
      { file_containing_symbol: "weft.v1.Nope" },
      { file_by_filename: "nope.proto" },
      { file_containing_extension: { containing_type: "weft.v1.Run", extension_number: 100 } },
    ]);
    expect(responses.map((r) => r.error_response?.error_code)).toEqual([5, 5, 5]);
    expect(responses[0]?.error_response?.error_message).toBe("symbol weft.v1.Nope not found");
  });

  it("lets buf curl list every method with no proto files", async () => {
    const { stdout } = await promisify(execFile)(
      BUF_BIN,
      ["curl", "--list-methods", "--protocol", "grpc", "--http2-prior-knowledge", weftd.baseUrl],
      { timeout: 30_000 },
    );
    const listed = stdout.trim().split("\n").sort();
    const expected = [
      WorkflowService,
      WorkerService,
      AdminService,
      FailureService,
      ScheduleService,
      Health,
    ].flatMap((s) => s.methods.map((m) => `${s.typeName}/${m.name}`));
    expected.push(
      "grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
      "grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
    );
    expect(listed).toEqual(expected.sort());
  });
});

describe("request size limit", () => {
  let small: WeftdProcess;
  beforeAll(async () => {
    small = await spawnWeftd({ redisUrl: redis.url, args: ["--max-request-bytes", "64KiB"] });
  });
  afterAll(async () => {
    await small?.kill();
  });

  const big = "x".repeat(100 * 1024);
  const stillAnswers = async () => {
    const c = grpcClient(small.address);
    try {
      expect((await grpcUnary(c, Health.method.check, { service: "" })).status).toBe(Status.SERVING);
    } finally {
      c.close();
    }
  };

  it.each([false, true])(
    "rejects an oversized gRPC request with RESOURCE_EXHAUSTED (gzip: %s)",
    async (gzip) => {
      const c = grpcClient(small.address, { gzip });
      try {
        const err = await grpcError(grpcUnary(c, Health.method.check, { service: big }));
        expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
      } finally {
        c.close();
      }
      await stillAnswers();
    },
  );

  it.each([false, true])(
    "rejects an oversized Connect request with resource_exhausted (gzip: %s)",
    async (gzip) => {
      const result = await connectJson(
        small.baseUrl,
        "grpc.health.v1.Health/Check",
        { service: big },
        { gzip },
      );
      expect(result.status).toBe(429);
      expect(result.body.code).toBe("resource_exhausted");
      await stillAnswers();
    },
  );

  it("accepts a request just under the limit", async () => {
    const result = await connectJson(small.baseUrl, "grpc.health.v1.Health/Check", {
      service: "y".repeat(60 * 1024),
    });
    expect(result).toMatchObject({ status: 404, body: { code: "not_found" } });
  });
});

describe("Redis outage", () => {
  it("turns NOT_SERVING while Redis is down and SERVING again once it is back", async () => {
    const ownRedis = await startTestRedis();
    const daemon = await spawnWeftd({ redisUrl: ownRedis.url });
    const c = grpcClient(daemon.address);
    const check = async () =>
      (await grpcUnary(c, Health.method.check, { service: "weft.v1.WorkerService" })).status;
    try {
      expect(await check()).toBe(Status.SERVING);
      const watch = grpcServerStream(c, Health.method.watch, { service: "" });
      const seen: Status[] = [];
      watch.on("data", (m: { status: Status }) => seen.push(m.status));
      watch.on("error", () => {});
      await waitFor(() => seen.length > 0, { message: "the first Watch message" });

      await ownRedis.stop();
      await waitFor(async () => (await check()) === Status.NOT_SERVING, {
        message: "NOT_SERVING after Redis stopped",
      });
      expect((await fetch(`${daemon.metricsUrl}/healthz`)).status).toBe(503);
      await waitFor(() => seen.includes(Status.NOT_SERVING), { message: "Watch to send NOT_SERVING" });

      await ownRedis.restart();
      await waitFor(async () => (await check()) === Status.SERVING, {
        message: "SERVING after Redis restarted",
      });
      await waitFor(() => seen.at(-1) === Status.SERVING, { message: "Watch to send SERVING again" });
      expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING, Status.SERVING]);
      watch.cancel();

      // One line when Redis goes away and one when it is back, not one per reconnection attempt.
      const unreachable = daemon.logs.filter((l) => l.msg.startsWith("redis unreachable"));
      const back = daemon.logs.filter((l) => l.msg === "redis reachable again");
      expect(unreachable).toHaveLength(1);
      expect(unreachable[0]?.level).toBe(40);
      expect(back).toHaveLength(1);
    } finally {
      c.close();
      await daemon.kill();
      await ownRedis.close();
    }
  });
});

describe("graceful shutdown", () => {
  it("on SIGTERM ends open streams with UNAVAILABLE, refuses new calls and exits 0", async () => {
    const daemon = await spawnWeftd({ redisUrl: redis.url, args: ["--shutdown-grace", "5s"] });
    const c = grpcClient(daemon.address);
    try {
      const watch = grpcServerStream(c, Health.method.watch, { service: "" });
      const seen: Status[] = [];
      watch.on("data", (m: { status: Status }) => seen.push(m.status));
      const ended = new Promise<grpc.ServiceError>((resolve) => watch.on("error", resolve));
      await waitFor(() => seen.length > 0, { message: "the first Watch message" });

      const started = Date.now();
      process.kill(daemon.pid, "SIGTERM");
      const err = await within(ended, 5000, "the Watch stream to end");
      expect(err.code).toBe(grpc.status.UNAVAILABLE);
      expect(err.details).toBe("weftd is shutting down, retry on another replica");
      expect(seen).toEqual([Status.SERVING, Status.NOT_SERVING]);

      const exit = await daemon.waitForExit(5000);
      expect(exit).toEqual({ code: 0, signal: null });
      expect(Date.now() - started).toBeLessThan(5000);
      expect(daemon.logs.map((l) => l.msg)).toContain("weftd stopped");

      const after = await grpcError(
        grpcUnary(c, WorkerService.method.heartbeat, {}, { deadline: Date.now() + 5000 }),
      );
      expect(after.code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      c.close();
      await daemon.kill();
    }
  });
});
