import { describe, expect, it } from "vitest";
import { keySlot } from "./slots.js";

describe("keySlot", () => {
  it("hashes keys as Redis Cluster does (CLUSTER KEYSLOT)", () => {
    // Figures from redis-cli CLUSTER KEYSLOT on Redis 7.0.
    expect(keySlot("123456789")).toBe(12739);
    expect(keySlot("foo")).toBe(12182);
    expect(keySlot("bar")).toBe(5061);
    expect(keySlot("")).toBe(0);
    expect(keySlot("héllo")).toBe(11061);
  });

  it("hashes only the hash tag when there is a non-empty one", () => {
    expect(keySlot("{user1000}.following")).toBe(3443);
    expect(keySlot("weft:run:{abc}:tasks")).toBe(keySlot("abc"));
    // The first { and the next } make the tag; an empty tag hashes the whole key.
    expect(keySlot("foo{}{bar}")).toBe(8363);
    expect(keySlot("foo{{bar}}zap")).toBe(4015);
    expect(keySlot("foo{bar}{zap}")).toBe(keySlot("bar"));
  });
});
