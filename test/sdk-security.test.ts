// The SDK and the CLI against a weftd that requires TLS with client certificates (mTLS) and
// bearer tokens.
import { randomUUID } from "node:crypto";
import { mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hashToken } from "@weft/daemon";
import { Code, createWeftClient, RunStatus, WeftError, workflow } from "@weft/sdk";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWeft } from "./cli-process.js";
import { makeTestCerts, type TestCerts } from "./support/certs.js";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess } from "./support/index.js";

const TOKEN = `client-${randomUUID()}`;
let redis: RedisServer;
let weftd: WeftdProcess;
let certs: TestCerts;

beforeAll(async () => {
  redis = await startTestRedis();
  certs = makeTestCerts();
  const dir = mkdtempSync(join(tmpdir(), "weft-sdk-auth-"));
  writeFileSync(
    join(dir, "weft.yaml"),
    "auth:\n  tokens:\n" +
      `    - name: client\n      sha256: ${hashToken(TOKEN)}\n` +
      "      scopes: [workflows:write, runs:trigger, runs:read, runs:cancel]\n",
  );
  weftd = await spawnWeftd({
    auth: true,
    redisUrl: redis.url,
    args: [
      ...["--config", join(dir, "weft.yaml")],
      ...["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-client-ca", certs.ca],
    ],
  });
});

afterAll(async () => {
  await weftd?.stop();
  await redis?.close();
});

function tls(withClientCert: boolean) {
  return {
    ca: readFileSync(certs.ca),
    ...(withClientCert ? { cert: readFileSync(certs.clientCert), key: readFileSync(certs.clientKey) } : {}),
  };
}

describe("TLS, mTLS and tokens", () => {
  it("works over mTLS with a token, on each protocol", async () => {
    for (const protocol of ["grpc", "connect", "grpc-web"] as const) {
      const client = createWeftClient({ address: weftd.address, tls: tls(true), token: TOKEN, protocol });
      try {
        const name = `secure-${protocol}`;
        const { workflow: stored } = await client.submitWorkflow(
          workflow(name).task("a", { queue: "nobody" }),
        );
        expect(stored.name).toBe(name);
        const { run } = await client.trigger(name, { n: 1 });
        const cancelled = await client.cancel(run.id, "test over TLS");
        expect(cancelled.status).toBe(RunStatus.CANCELLED);
        const events = [];
        for await (const e of client.watch(run.id)) events.push(e.sequence);
        expect(events.length).toBeGreaterThan(1);
      } finally {
        client.close();
      }
    }
  });

  it("rejects a call without a token as UNAUTHENTICATED, and a handshake without a client certificate", async () => {
    const noToken = createWeftClient({ address: weftd.address, tls: tls(true) });
    let err: unknown;
    try {
      await noToken.getRun("00000000-0000-4000-8000-000000000000");
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(WeftError);
    expect((err as WeftError).code).toBe(Code.Unauthenticated);
    noToken.close();

    const noCert = createWeftClient({
      address: weftd.address,
      tls: tls(false),
      token: TOKEN,
      timeoutMs: 5000,
    });
    let handshake: unknown;
    try {
      await noCert.getRun("00000000-0000-4000-8000-000000000000");
    } catch (e) {
      handshake = e;
    }
    expect(handshake).toBeInstanceOf(WeftError);
    noCert.close();
  });

  it("lets the CLI in with --ca, --cert, --key and --token", async () => {
    const flags = ["--address", `https://${weftd.address}`, "--ca", certs.ca, "--cert", certs.clientCert];
    const ok = await runWeft([
      "runs",
      "ls",
      ...flags,
      "--key",
      certs.clientKey,
      "--token",
      TOKEN,
      "--limit",
      "1",
    ]);
    expect([ok.code, ok.stderr]).toEqual([0, ""]);
    expect(ok.stdout.split("\n")[0]).toMatch(/^RUN +WORKFLOW +VERSION +STATUS +CREATED +DURATION$/);
    const fromEnv = await runWeft(["runs", "ls", ...flags, "--key", certs.clientKey], { WEFT_TOKEN: TOKEN });
    expect(fromEnv.code).toBe(0);
    const denied = await runWeft(["runs", "ls", ...flags, "--key", certs.clientKey]);
    expect(denied.code).toBe(1);
    expect(denied.stderr.split("\n")).toEqual([expect.stringMatching(/^weft: .*token/i), ""]);
    const missing = await runWeft([
      "runs",
      "ls",
      "--ca",
      join(certs.dir, "missing.pem"),
      "--address",
      weftd.address,
    ]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toBe(
      `weft: --ca: cannot read ${join(certs.dir, "missing.pem")}: no such file; see weft runs ls --help\n`,
    );
  });
});
