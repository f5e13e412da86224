import { describe, expect, it } from "vitest";
import { LruCache } from "./lru-cache.js";

function keysOf(cache: LruCache<string, number>, candidates: string[]): string[] {
  return candidates.filter((k) => cache.get(k) !== undefined);
}

describe("LruCache", () => {
  it("keeps at least maxEntries recently used entries and at most twice as many", () => {
    const cache = new LruCache<string, number>({ maxEntries: 3 });
    for (let i = 0; i < 10; i++) cache.set(`k${i}`, i);
    // Generations of 3: {k6,k7,k8} became the old one when k9 came in.
    expect(cache.size).toBe(4);
    expect(keysOf(cache, ["k5", "k6", "k7", "k8", "k9"])).toEqual(["k6", "k7", "k8", "k9"]);
  });

  it("replaces a value set again in place, with its weight", () => {
    const cache = new LruCache<string, number>({ maxEntries: 2, maxWeight: 100, weigh: (v) => v });
    cache.set("a", 1);
    cache.set("a", 5);
    cache.set("b", 2);
    expect([cache.get("a"), cache.size, cache.weight]).toEqual([5, 2, 7]);
  });

  it("keeps an entry that is read, whatever was set since", () => {
    const cache = new LruCache<string, number>({ maxEntries: 2 });
    cache.set("hot", 0);
    for (let i = 0; i < 20; i++) {
      cache.set(`k${i}`, i);
      expect(cache.get("hot")).toBe(0);
    }
    expect(cache.size).toBeLessThanOrEqual(4);
  });

  it("bounds the total weight, keeping an entry heavier than the bound until the next one", () => {
    const cache = new LruCache<string, number>({ maxEntries: 100, maxWeight: 10, weigh: (v) => v });
    cache.set("a", 6);
    cache.set("b", 6); // 12 > 10: a ages
    expect(cache.weight).toBe(12);
    cache.set("c", 6); // b ages, a is dropped
    expect(keysOf(cache, ["a", "b", "c"])).toEqual(["b", "c"]);
    cache.set("huge", 50);
    expect(cache.get("huge")).toBe(50);
    cache.set("d", 1);
    expect(keysOf(cache, ["c", "huge", "d"])).toEqual(["huge", "d"]);
    expect(cache.weight).toBe(51);
  });

  it("replaces a value and its weight", () => {
    const cache = new LruCache<string, number>({ maxEntries: 10, maxWeight: 100, weigh: (v) => v });
    cache.set("a", 30);
    cache.set("a", 40);
    expect(cache.get("a")).toBe(40);
    expect(cache.size).toBe(1);
    expect(cache.weight).toBe(40);
  });
});
