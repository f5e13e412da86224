import { Code, ConnectError } from "@connectrpc/connect";
import { describe, expect, it } from "vitest";
import {
  isRedisUnavailableError,
  MAX_RECONNECT_DELAY_MS,
  reconnectDelay,
  redisErrorToConnect,
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

describe("redisErrorToConnect", () => {
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
