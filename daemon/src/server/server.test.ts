import { describe, expect, it } from "vitest";
import { encodeGrpcMessage } from "./grpc-unary.js";

describe("encodeGrpcMessage", () => {
  it("encodes only what the gRPC spec asks: %, controls and non-ASCII bytes", () => {
    expect(encodeGrpcMessage('tasks[1].depends_on: unknown task "b", see docs/dag?x=1')).toBe(
      'tasks[1].depends_on: unknown task "b", see docs/dag?x=1',
    );
    expect(encodeGrpcMessage("100% done\nnext")).toBe("100%25 done%0Anext");
    expect(encodeGrpcMessage("é")).toBe("%C3%A9");
  });
});
