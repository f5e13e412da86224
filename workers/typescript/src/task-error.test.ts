import { describe, expect, test } from "vitest";
import { NonRetryableError } from "./errors.js";
import { taskFailureFrom } from "./task-error.js";

describe("taskFailureFrom", () => {
  test("an Error reports its name, message and stack, retryable unset", () => {
    const err = new TypeError("not a number");
    const { error, retryable } = taskFailureFrom(err);
    expect(error).toMatchObject({ type: "TypeError", message: "not a number", details: err.stack });
    expect(retryable).toBeUndefined();
  });

  test("a string `type` property wins over the name", () => {
    const err = Object.assign(new Error("quota"), { type: "QuotaExceeded" });
    expect(taskFailureFrom(err).error.type).toBe("QuotaExceeded");
  });

  test("NonRetryableError is not retryable and reports its type, else its class name", () => {
    class Invalid extends NonRetryableError {}
    expect(taskFailureFrom(new NonRetryableError("x"))).toMatchObject({
      error: { type: "NonRetryableError", message: "x" },
      retryable: false,
    });
    expect(taskFailureFrom(new NonRetryableError("x", { type: "Custom" })).error.type).toBe("Custom");
    expect(taskFailureFrom(new Invalid("y")).error.type).toBe("Invalid");
  });

  test("a thrown non-Error is described", () => {
    expect(taskFailureFrom("plain string").error).toMatchObject({ type: "Error", message: "plain string" });
    expect(taskFailureFrom({ code: 7 }).error).toMatchObject({ type: "Error", message: '{"code":7}' });
  });
});
