// What `weft` says when the command line is wrong (exit 2) or the address does not lead to a weftd
// it can talk to (exit 4): one line in our own words, naming the flag or the address.
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runWeft } from "./cli-process.js";
import { makeTestCerts, type TestCerts } from "./support/certs.js";
import { type RedisServer, spawnWeftd, startTestRedis, type WeftdProcess } from "./support/index.js";

let redis: RedisServer;
let plain: WeftdProcess;
let secure: WeftdProcess;
let mutual: WeftdProcess;
let certs: TestCerts;

beforeAll(async () => {
  redis = await startTestRedis();
  certs = makeTestCerts();
  const tls = ["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey];
  [plain, secure, mutual] = await Promise.all([
    spawnWeftd({ redisUrl: redis.url }),
    spawnWeftd({ redisUrl: redis.url, args: tls }),
    spawnWeftd({ redisUrl: redis.url, args: [...tls, "--tls-client-ca", certs.ca] }),
  ]);
});

afterAll(async () => {
  await Promise.all([plain?.stop(), secure?.stop(), mutual?.stop()]);
  await redis?.close();
});

describe("weft: usage errors in our own words, exit 2", () => {
  it.each([
    [
      ["runs", "ls", "--limt", "3"],
      "weft runs ls: unknown option --limt (did you mean --limit?); see weft runs ls --help",
    ],
    [
      ["runs", "ls", "--adress", "x"],
      "weft runs ls: unknown option --adress (did you mean --address?); see weft runs ls --help",
    ],
    [["runs", "ls", "--frobnicate"], "weft runs ls: unknown option --frobnicate; see weft runs ls --help"],
    [["trigger", "etl", "-x"], "weft trigger: unknown option -x; see weft trigger --help"],
    [["runs", "ls", "--limit"], "weft runs ls: --limit needs a value; see weft runs ls --help"],
    [["runs", "ls", "--limit", "--json"], "weft runs ls: --limit needs a value; see weft runs ls --help"],
    [["runs", "ls", "--json=yes"], "weft runs ls: --json takes no value; see weft runs ls --help"],
    [
      ["runs", "ls", "--limit", "-3"],
      'weft: --limit must be a whole number, got "-3"; see weft runs ls --help',
    ],
    [["runs", "ls", "--limit=-3"], 'weft: --limit must be a whole number, got "-3"; see weft runs ls --help'],
    [
      ["workflows", "get", "etl", "--version", "-1"],
      'weft: --version must be a whole number, got "-1"; see weft workflows get --help',
    ],
    [
      ["runs", "ls", "--ca", "/nonexistent/ca.pem"],
      "weft: --ca: cannot read /nonexistent/ca.pem: no such file; see weft runs ls --help",
    ],
  ])("%j", async (args, line) => {
    expect(await runWeft(args)).toEqual({ code: 2, stdout: "", stderr: `${line}\n` });
  });

  it("takes the global options before the command too, and names an unknown one there", async () => {
    expect(await runWeft(["--address", "127.0.0.1:1", "runs", "ls"])).toEqual({
      code: 4,
      stdout: "",
      stderr:
        "weft: no weftd at 127.0.0.1:1: connection refused (is weftd running? `pnpm weft dev` starts one)\n",
    });
    expect(
      await runWeft(["--json", `--address=${plain.address}`, "runs", "ls", "--limit", "1"]),
    ).toMatchObject({
      code: 0,
      stderr: "",
    });
    expect(await runWeft(["--bogus", "runs", "ls"])).toEqual({
      code: 2,
      stdout: "",
      stderr: "weft: unknown option --bogus before the command; see weft --help\n",
    });
  });

  it("still takes a value that starts with a dash where the flag wants one", async () => {
    const res = await runWeft(["trigger", "no-such-workflow", "--input", "-1", "--address", plain.address]);
    expect(res).toEqual({ code: 3, stdout: "", stderr: 'weft: workflow "no-such-workflow" not found\n' });
  });
});

describe("weft: an address without a weftd it can talk to, exit 4", () => {
  it("says so when nothing listens or the host does not resolve", async () => {
    expect(await runWeft(["runs", "ls", "--address", "127.0.0.1:1"])).toEqual({
      code: 4,
      stdout: "",
      stderr:
        "weft: no weftd at 127.0.0.1:1: connection refused (is weftd running? `pnpm weft dev` starts one)\n",
    });
    expect(await runWeft(["runs", "ls", "--address", "no-such-host.invalid:7233"])).toEqual({
      code: 4,
      stdout: "",
      stderr: "weft: cannot resolve no-such-host.invalid, the host of no-such-host.invalid:7233\n",
    });
  });

  it("names the metrics port when given it instead of the API port", async () => {
    const address = `127.0.0.1:${plain.metricsPort}`;
    for (const command of [
      ["runs", "ls"],
      ["watch", "00000000-0000-4000-8000-000000000000"],
    ]) {
      expect(await runWeft([...command, "--address", address])).toEqual({
        code: 4,
        stdout: "",
        stderr: `weft: no gRPC server at ${address}: it answers HTTP/1.1, not HTTP/2; is it the metrics port?\n`,
      });
    }
  });

  it("says that a plaintext weftd speaks plaintext when asked for TLS", async () => {
    const url = `https://${plain.address}`;
    expect(await runWeft(["runs", "ls", "--address", url])).toEqual({
      code: 4,
      stdout: "",
      stderr: `weft: TLS handshake failed: the server at ${url} speaks plaintext; use http:// or drop --ca/--cert/--key\n`,
    });
    expect(await runWeft(["runs", "ls", "--address", plain.address, "--ca", certs.ca])).toEqual({
      code: 4,
      stdout: "",
      stderr: `weft: TLS handshake failed: the server at ${plain.address} speaks plaintext; use http:// or drop --ca/--cert/--key\n`,
    });
  });

  it("says that a TLS weftd speaks TLS, and what its certificate needs", async () => {
    expect(await runWeft(["runs", "ls", "--address", secure.address])).toEqual({
      code: 4,
      stdout: "",
      stderr: `weft: the server at ${secure.address} speaks TLS; use https://${secure.address} (and --ca if its certificate is private)\n`,
    });
    const untrusted = await runWeft(["runs", "ls", "--address", `https://${secure.address}`]);
    expect(untrusted.code).toBe(4);
    expect(untrusted.stderr).toMatch(
      new RegExp(
        `^weft: TLS: the certificate of https://${secure.address} is not trusted \\(.+\\); give the CA that signed it with --ca\\n$`,
      ),
    );
    const ok = await runWeft(["runs", "ls", "--address", `https://${secure.address}`, "--ca", certs.ca]);
    expect(ok.code, ok.stderr).toBe(0);
  });

  it("asks for a client certificate when weftd requires one", async () => {
    const res = await runWeft(["runs", "ls", "--address", `https://${mutual.address}`, "--ca", certs.ca]);
    expect(res).toEqual({
      code: 4,
      stdout: "",
      stderr: `weft: TLS: the server at https://${mutual.address} asks for a client certificate; give it with --cert and --key\n`,
    });
  });
});
