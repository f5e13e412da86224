import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  isRedisUnavailableError,
  MAX_RECONNECT_DELAY_MS,
  reconnectDelay,
  redisErrorToConnect,
  redisTrouble,
} from "./redis.js";

function errno(message: string, code: string): Error {
  return Object.assign(new Error(message), { code });
}

describe("isRedisUnavailableError", () => {
  it.each([
    ["a closed connection", new Error("Connection is closed.")],
    ["no offline queue", new Error("Stream isn't writeable and enableOfflineQueue options is false")],
    [
      "retries exhausted",
      Object.assign(new Error("Reached the max retries per request limit"), {
        name: "MaxRetriesPerRequestError",
      }),
    ],
    ["refused", errno("connect ECONNREFUSED 127.0.0.1:6379", "ECONNREFUSED")],
    ["reset", errno("read ECONNRESET", "ECONNRESET")],
    ["loading", new Error("LOADING Redis is loading the dataset in memory")],
    ["a Cluster that is down", new Error("CLUSTERDOWN The cluster is down")],
    [
      "a Cluster no node of which answers",
      Object.assign(new Error("Failed to refresh slots cache."), { name: "ClusterAllFailedError" }),
    ],
    ["a Cluster not connected", new Error("Cluster isn't ready and enableOfflineQueue options is false")],
    [
      "a failover's retries used up",
      new Error("Too many Cluster redirections. Last error: Error: Connection is closed."),
    ],
    [
      "Sentinels that do not answer",
      new Error("All sentinels are unreachable. Retrying from scratch after 50ms."),
    ],
    ["a failover", new Error("READONLY You can't write against a read only replica.")],
    [
      "a pipeline cut by the connection's close",
      Object.assign(new Error("Command aborted due to connection close"), { name: "AbortError" }),
    ],
  ])("is true for %s", (_what, err) => expect(isRedisUnavailableError(err)).toBe(true));

  it.each([
    ["a script error", new Error("ERR Error running script")],
    ["a wrong type", new Error("WRONGTYPE Operation against a key holding the wrong kind of value")],
    ["a non-error", "Connection is closed."],
  ])("is false for %s", (_what, err) => expect(isRedisUnavailableError(err)).toBe(false));
});

describe("redisTrouble", () => {
  it.each([
    ["MOVED 3999 127.0.0.1:6381", "cluster"],
    ["ASK 3999 127.0.0.1:6381", "cluster"],
    ["TRYAGAIN Multiple keys request during rehashing of slot", "cluster"],
    ["CROSSSLOT Keys in request don't hash to the same slot", "cluster"],
    ["Too many Cluster redirections. Last error: ReplyError: TRYAGAIN Multiple keys", "cluster"],
    ["Too many Cluster redirections. Last error: ReplyError: CLUSTERDOWN The cluster is down", "unreachable"],
    ["CLUSTERDOWN Hash slot not served", "unreachable"],
    ["OOM command not allowed when used memory > 'maxmemory'.", "memory"],
    ["ERR syntax error", undefined],
  ])("classifies %s as %s", (message, trouble) => {
    expect(redisTrouble(new Error(message))).toBe(trouble);
  });
});

describe("redisErrorToConnect", () => {
  it.each([
    [
      "MOVED 3999 127.0.0.1:6381",
      "Redis Cluster could not serve the command now (slots moving) - try again later",
    ],
    [
      "CROSSSLOT Keys in request don't hash to the same slot",
      "Redis Cluster could not serve the command now (slots moving) - try again later",
    ],
    ["CLUSTERDOWN The cluster is down", "Redis is unreachable - try again later"],
    [
      "OOM command not allowed when used memory > 'maxmemory'.",
      "Redis is out of memory and refuses writes - try again later",
    ],
  ])("answers %s UNAVAILABLE without Redis's words", (message, answer) => {
    const mapped = redisErrorToConnect(new Error(message)) as ConnectError;
    expect(mapped.code).toBe(Code.Unavailable);
    expect(mapped.rawMessage).toBe(answer);
    expect(mapped.rawMessage).not.toContain(message.split(" ")[0]);
  });

  it("turns connection errors into UNAVAILABLE with a short message and keeps the cause", () => {
    const cause = new Error("Connection is closed.");
    const mapped = redisErrorToConnect(cause);
    expect(mapped).toBeInstanceOf(ConnectError);
    expect((mapped as ConnectError).code).toBe(Code.Unavailable);
    expect((mapped as ConnectError).rawMessage).toBe("Redis is unreachable - try again later");
    expect((mapped as ConnectError).cause).toBe(cause);
  });

  it("leaves other errors alone", () => {
    const err = new Error("ERR syntax error");
    expect(redisErrorToConnect(err)).toBe(err);
    const connectError = new ConnectError("x", Code.NotFound);
    expect(redisErrorToConnect(connectError)).toBe(connectError);
  });
});

describe("reconnectDelay", () => {
  it("doubles from 50 ms up to the cap", () => {
    expect([1, 2, 3, 4, 5, 6, 100].map(reconnectDelay)).toEqual([50, 100, 200, 400, 800, 1000, 1000]);
    expect(MAX_RECONNECT_DELAY_MS).toBe(1000);
  });
});
