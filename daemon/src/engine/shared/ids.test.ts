import { describe, expect, it } from "vitest";
import { formatLeaseId, newLeaseNonce, newRunId, parseLeaseId } from "./ids.js";

describe("lease nonces", () => {
  it("are 128-bit base64url strings that a lease id carries, never repeated across pool refills", () => {
    const nonces = Array.from({ length: 1000 }, () => newLeaseNonce());
    for (const nonce of nonces) expect(nonce).toMatch(/^[A-Za-z0-9_-]{22}$/);
    expect(new Set(nonces).size).toBe(nonces.length);
    const lease = { runId: newRunId(), attempt: 2, nonce: nonces[999] as string, taskId: "load" };
    expect(parseLeaseId(formatLeaseId(lease))).toEqual(lease);
  });
});
