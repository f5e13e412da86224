import { describe, expect, test } from "vitest";
import { startHarness } from "./testing/harness.js";
import { toBaseUrl } from "./transport.js";

describe("worker transport", () => {
  test("accepts host:port and URLs", () => {
    expect(toBaseUrl("127.0.0.1:7233")).toBe("http://127.0.0.1:7233");
    expect(toBaseUrl("https://weft.internal:7233")).toBe("https://weft.internal:7233");
  });

  test("sends the token as a bearer authorization header", async () => {
    const h = await startHarness({ token: "s3cret", handlers: { a: () => 1 } });
    await h.fake.waitFor("a poll", () => h.fake.authorizations[0]);
    expect(h.fake.authorizations[0]).toBe("Bearer s3cret");
  });
});
