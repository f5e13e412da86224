export type { JsonObject, JsonValue } from "@bufbuild/protobuf";
export { LeaseLostError, NonRetryableError, TaskCancelledError, WorkerShutdownError } from "./errors.js";
export type { HandlerResult, TaskHandler, TaskHandlers } from "./handler.js";
export type { WorkerOptions } from "./options.js";
export type { TaskContext } from "./task-context.js";
export type { WorkerTransportOptions } from "./transport.js";
export { createWorkerTransport } from "./transport.js";
export { Worker } from "./worker.js";
