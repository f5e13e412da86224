import type { JsonValue } from "@bufbuild/protobuf";
import type { TaskContext } from "./task-context.js";

/**
 * What a handler may return: a JSON value, or nothing (reported as `null`).
 */
// biome-ignore lint/suspicious/noConfusingVoidType: lets `async () => {}` be a handler.
export type HandlerResult = JsonValue | undefined | void;

/**
 * Runs one task: receives the task's static input and returns its output. A thrown
 * {@link NonRetryableError} fails the task at once; any other error fails the attempt.
 */
export type TaskHandler = (input: JsonValue, ctx: TaskContext) => Promise<HandlerResult> | HandlerResult;

/** Handlers by the name tasks refer to them with. */
export type TaskHandlers = Readonly<Record<string, TaskHandler>>;
