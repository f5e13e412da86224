import { describe, expect, it } from "vitest";
import { parseRedisTarget, redactRedisUrl } from "./redis-target.js";

describe("parseRedisTarget", () => {
  it("takes one server as a redis:// or rediss:// URL", () => {
    expect(parseRedisTarget("redis://:pw@db:6380/2")).toEqual({
      kind: "standalone",
      url: "redis://:pw@db:6380/2",
    });
    expect(parseRedisTarget("rediss://db")).toEqual({ kind: "standalone", url: "rediss://db" });
  });

  it("takes a Cluster as redis+cluster:// with one or more nodes, credentials and TLS", () => {
    expect(parseRedisTarget("redis+cluster://10.0.0.1:7000,10.0.0.2:7001,[::1]:7002,host")).toEqual({
      kind: "cluster",
      tls: false,
      nodes: [
        { host: "10.0.0.1", port: 7000 },
        { host: "10.0.0.2", port: 7001 },
        { host: "::1", port: 7002 },
        { host: "host", port: 6379 },
      ],
    });
    expect(parseRedisTarget("rediss+cluster://app:s%40cret@cache.example.com:6379/")).toEqual({
      kind: "cluster",
      tls: true,
      username: "app",
      password: "s@cret",
      nodes: [{ host: "cache.example.com", port: 6379 }],
    });
    expect(parseRedisTarget("redis+cluster://:only-password@h:1")).toMatchObject({
      password: "only-password",
    });
  });

  it("takes Sentinels as redis+sentinel:// with the primary's name, a database and the Sentinels' own credentials", () => {
    expect(
      parseRedisTarget(
        "rediss+sentinel://u:p@s1:26379,s2/mymaster/3?sentinelPassword=sp&sentinelUsername=su",
      ),
    ).toEqual({
      kind: "sentinel",
      tls: true,
      username: "u",
      password: "p",
      sentinels: [
        { host: "s1", port: 26379 },
        { host: "s2", port: 26379 },
      ],
      name: "mymaster",
      db: 3,
      sentinelPassword: "sp",
      sentinelUsername: "su",
    });
  });

  it.each([
    ["http://x", /unknown scheme http: expected redis:\/\//],
    ["not a url", /expected a URL: redis:\/\//],
    ["redis+cluster://", /names no host/],
    ["redis+cluster://h:99999", /invalid host:port "h:99999"/],
    ["redis+cluster://h:7000/2", /a Redis Cluster has no databases or names/],
    ["redis+cluster://h:7000?tls=1", /unknown parameter "tls" of a redis\+cluster:\/\/ URL/],
    ["redis+sentinel://s1:26379", /names no primary: expected redis\+sentinel:\/\/host:port\/<master name>/],
    ["redis+sentinel://s1/m/x", /expected \/<master name>\[\/<db number>\] after the Sentinels/],
    ["redis+sentinel://s1/m?password=x", /unknown parameter "password" of a redis\+sentinel:\/\/ URL/],
    ["redis+sentinels://s1/m", /unknown scheme redis\+sentinels/],
  ])("refuses %s saying why", (url, message) => {
    expect(() => parseRedisTarget(url)).toThrow(message);
  });
});

describe("redactRedisUrl", () => {
  it("masks every password of every URL form", () => {
    expect(redactRedisUrl("redis://user:secret@db:6379/0")).toBe("redis://user:***@db:6379/0");
    expect(redactRedisUrl("rediss+cluster://u:secret@h1:1,h2:2")).toBe("rediss+cluster://u:***@h1:1,h2:2");
    expect(redactRedisUrl("redis+sentinel://:secret@s1,s2/m?sentinelPassword=other")).toBe(
      "redis+sentinel://:***@s1,s2/m?sentinelPassword=***",
    );
    expect(redactRedisUrl("redis+cluster://h1:1")).toBe("redis+cluster://h1:1");
  });
});
