import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { connect as tlsConnect } from "node:tls";
import { Code, createClient } from "@connectrpc/connect";
import { createGrpcTransport } from "@connectrpc/connect-node";
import { freePort, hashToken } from "@weft/daemon";
import { Health } from "@weft/sdk/gen/health/v1/health_pb.js";
import { WorkflowService } from "@weft/sdk/gen/weft/v1/workflow_service_pb.js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RUNTIMES, spawnRuntimeWorker } from "./fixtures/runtimes.js";
import { makeTestCerts, type TestCerts } from "./support/certs.js";
import {
  grpc,
  grpcClient,
  grpcError,
  grpcUnary,
  type RedisServer,
  spawnWeftd,
  startTestRedis,
  type WeftdProcess,
  waitFor,
} from "./support/index.js";
import { RunStatus, rpcError, task, weftClients } from "./support/weft.js";

let redis: RedisServer;
let certs: TestCerts;

beforeAll(async () => {
  redis = await startTestRedis();
  certs = makeTestCerts();
});

afterAll(async () => {
  await redis?.close();
});

function tlsArgs(mutual: boolean): string[] {
  return [
    "--tls-cert",
    certs.serverCert,
    "--tls-key",
    certs.serverKey,
    ...(mutual ? ["--tls-client-ca", certs.ca] : []),
  ];
}

function client(port: number, withClientCert: boolean) {
  const transport = createGrpcTransport({
    baseUrl: `https://127.0.0.1:${port}`,
    nodeOptions: {
      ca: readFileSync(certs.ca),
      ...(withClientCert ? { cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) } : {}),
    },
  });
  return { health: createClient(Health, transport), workflows: createClient(WorkflowService, transport) };
}

/** The SHA-256 fingerprint of the certificate a fresh TLS connection sees. */
function servedFingerprint(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      { host: "127.0.0.1", port, ca: readFileSync(certs.ca), ALPNProtocols: ["h2"] },
      () => {
        resolve(socket.getPeerCertificate().fingerprint256);
        socket.destroy();
      },
    );
    socket.on("error", reject);
  });
}

describe("TLS on the API port", () => {
  let weftd: WeftdProcess;
  beforeAll(async () => {
    weftd = await spawnWeftd({ redisUrl: redis.url, args: tlsArgs(false) });
  });
  afterAll(async () => {
    await weftd?.stop();
  });

  it("serves the TS SDK's transport and a grpc-js client over TLS, and refuses cleartext", async () => {
    const c = client(weftd.port, false);
    expect((await c.health.check({ service: "" })).status).toBe(1);
    const res = await c.workflows.submitWorkflow({ definition: { name: "over-tls", tasks: [task("a")] } });
    expect(res.workflow?.version).toBe(1);

    const js = grpcClient(weftd.address, { credentials: grpc.credentials.createSsl(readFileSync(certs.ca)) });
    const checked = await grpcUnary(js, Health.method.check, { service: "" });
    expect(checked.status).toBe(1);
    js.close();

    // A cleartext gRPC peer gets nowhere.
    const cleartext = grpcClient(weftd.address);
    const refused = await grpcError(
      grpcUnary(cleartext, Health.method.check, { service: "" }, { deadline: Date.now() + 5000 }),
    );
    expect(refused.code).toBe(grpc.status.UNAVAILABLE);
    cleartext.close();
  });

  it("reloads its certificate on SIGHUP", async () => {
    const before = await servedFingerprint(weftd.port);
    const next = certs.reissueServer("server-2");
    copyFileSync(next.cert, certs.serverCert);
    copyFileSync(next.key, certs.serverKey);
    process.kill(weftd.pid, "SIGHUP");
    await weftd.waitForLog((l) => l.msg === "TLS certificate reloaded", "the reload log line");
    const after = await waitFor(
      async () => {
        const f = await servedFingerprint(weftd.port);
        return f !== before ? f : undefined;
      },
      { message: "a new connection to see the new certificate" },
    );
    expect(after).not.toBe(before);
    expect((await client(weftd.port, false).health.check({ service: "" })).status).toBe(1);
  });
});

describe("mTLS", () => {
  it("requires a client certificate signed by the configured CA", async () => {
    const weftd = await spawnWeftd({ redisUrl: redis.url, args: tlsArgs(true) });
    try {
      expect((await client(weftd.port, true).health.check({ service: "" })).status).toBe(1);
      // Without a client certificate the handshake fails: the TS transport and grpc-js both give up.
      const err = await rpcError(client(weftd.port, false).health.check({ service: "" }));
      expect([Code.Unavailable, Code.Internal, Code.Canceled]).toContain(err.code);
      const anonymous = grpcClient(weftd.address, {
        credentials: grpc.credentials.createSsl(readFileSync(certs.ca)),
      });
      const refused = await grpcError(
        grpcUnary(anonymous, Health.method.check, { service: "" }, { deadline: Date.now() + 5000 }),
      );
      expect(refused.code).toBe(grpc.status.UNAVAILABLE);
      anonymous.close();
      const withCert = grpcClient(weftd.address, {
        credentials: grpc.credentials.createSsl(
          readFileSync(certs.ca),
          readFileSync(certs.clientKey),
          readFileSync(certs.clientCert),
        ),
      });
      expect((await grpcUnary(withCert, Health.method.check, { service: "" })).status).toBe(1);
      withCert.close();
    } finally {
      await weftd.stop();
    }
  });
});

describe("TLS to Redis", () => {
  it("runs on a rediss:// URL to a TLS-only redis-server", async () => {
    const port = await freePort();
    const server = spawn(
      "redis-server",
      [
        "--port",
        "0",
        "--tls-port",
        String(port),
        "--save",
        "",
        "--appendonly",
        "no",
        "--tls-cert-file",
        certs.serverCert,
        "--tls-key-file",
        certs.serverKey,
        "--tls-ca-cert-file",
        certs.ca,
        "--tls-auth-clients",
        "no",
      ],
      { stdio: "ignore" },
    );
    try {
      const weftd = await spawnWeftd({
        redisUrl: `rediss://127.0.0.1:${port}`,
        env: { NODE_EXTRA_CA_CERTS: certs.ca },
      });
      try {
        const c = weftClients(weftd.address);
        await c.workflows.submitWorkflow({
          definition: { name: "via-rediss", tasks: [task("a", [], { queue: "rq" })] },
        });
        const runId = (await c.workflows.trigger({ workflow: "via-rediss" })).run?.id ?? "";
        const t = await c.workers.pollTask({ queue: "rq", wait: { seconds: 5n } });
        await c.workers.completeTask({ leaseId: t.assignment?.leaseId ?? "" });
        expect((await c.workflows.getRun({ runId })).run?.status).toBe(RunStatus.SUCCEEDED);
      } finally {
        await weftd.stop();
      }
    } finally {
      server.kill("SIGKILL");
    }
  });
});

describe("workers over mTLS with a token", () => {
  it.each(RUNTIMES)("a %s worker completes tasks with --ca, --cert, --key and --token", async (runtime) => {
    const token = `worker-${randomUUID()}`;
    const client = `client-${randomUUID()}`;
    const config = join(certs.dir, "auth.yaml");
    writeFileSync(
      config,
      `auth:\n  tokens:\n    - name: w\n      sha256: ${hashToken(token)}\n      scopes: [worker]\n      queues: [secure]\n` +
        `    - name: c\n      sha256: ${hashToken(client)}\n      scopes: [workflows:write, runs:trigger, runs:read]\n`,
    );
    const weftd = await spawnWeftd({
      redisUrl: redis.url,
      args: [...tlsArgs(true), "--config", config],
      auth: true,
    });
    const worker = await spawnRuntimeWorker(runtime, {
      address: weftd.address,
      queue: "secure",
      args: ["--ca", certs.ca, "--cert", certs.clientCert, "--key", certs.clientKey, "--token", token],
    });
    try {
      const transport = createGrpcTransport({
        baseUrl: `https://127.0.0.1:${weftd.port}`,
        nodeOptions: {
          ca: readFileSync(certs.ca),
          cert: readFileSync(certs.clientCert),
          key: readFileSync(certs.clientKey),
        },
        interceptors: [
          (next) => (req) => {
            req.header.set("authorization", `Bearer ${client}`);
            return next(req);
          },
        ],
      });
      const workflows = createClient(WorkflowService, transport);
      await workflows.submitWorkflow({
        definition: { name: "mtls", tasks: [task("a", [], { queue: "secure" })] },
      });
      const runId = (await workflows.trigger({ workflow: "mtls" })).run?.id ?? "";
      const run = await waitFor(
        async () => {
          const r = (await workflows.getRun({ runId })).run;
          return r?.status === RunStatus.SUCCEEDED ? r : undefined;
        },
        { message: "the worker to complete the task over mTLS", timeoutMs: 20_000 },
      );
      expect(run.tasks[0]?.attempt).toBe(1);
    } finally {
      await worker.stop();
      await weftd.stop();
    }
  });
});
