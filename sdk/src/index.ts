// @weft/sdk: the public API. The generated code is reachable too, as "@weft/sdk/gen/weft/v1/*.js".
export type { JsonObject, JsonValue } from "@bufbuild/protobuf";
export { Code } from "@connectrpc/connect";
export {
  createWeftClient,
  type ListRunsFilter,
  type ResultOptions,
  type SubmitOptions,
  type SubmitResult,
  type TriggerOptions,
  type TriggerResult,
  type TriggerSpec,
  toDefinition,
  type WeftClient,
  type WorkflowInput,
  type WorkflowWithPlan,
} from "./client.js";
export type {
  ReconnectOptions,
  TlsOptions,
  TriggerBatchOptions,
  WeftClientOptions,
  WeftProtocol,
} from "./client-options.js";
export { type DurationInput, durationMs, formatDuration, fromDuration, toDuration } from "./duration.js";
export { type CallContext, toWeftError } from "./error-mapping.js";
export {
  DeadLetterNotFoundError,
  type FailedTask,
  type FieldViolation,
  InvalidArgumentError,
  InvalidWorkflowError,
  RunCancelledError,
  RunFailedError,
  RunNotFoundError,
  RunTimedOutError,
  runOutcomeError,
  ScheduleNotFoundError,
  WeftError,
  WeftUnavailableError,
  WorkflowNotFoundError,
} from "./errors.js";
export type {
  BulkOptions,
  BulkRetryResult,
  CircuitBreakerSpec,
  DeadLetterQuery,
  FailureMethods,
  ResumeOptions,
  ResumeResult,
} from "./failures.js";
export type { Queue, RateLimit } from "./gen/weft/v1/admin_service_pb.js";
export { type Circuit, type CircuitBreaker, CircuitState } from "./gen/weft/v1/circuit_breaker_pb.js";
export type { AttemptError, DeadLetter, GetDeadLetterResponse } from "./gen/weft/v1/failure_service_pb.js";
export {
  EventType,
  type Run,
  type RunEvent,
  RunStatus,
  type TaskError,
  type TaskRun,
  TaskStatus,
} from "./gen/weft/v1/run_pb.js";
export {
  OverlapPolicy,
  type Schedule,
  type ScheduleSpec,
  ScheduleStatus,
} from "./gen/weft/v1/schedule_service_pb.js";
export type {
  ExecutionPlan,
  RetryPolicy,
  TaskDefinition,
  TaskTimeouts,
  Workflow,
  WorkflowDefinition,
  WorkflowSummary,
} from "./gen/weft/v1/workflow_pb.js";
export { type GrpcUnaryOptions, grpcUnaryTransport } from "./grpc-unary.js";
export { fromValue, toValue } from "./json-value.js";
export {
  type BackfillResult,
  type CreateScheduleOptions,
  type Overlap,
  type ScheduleMethods,
  type ScheduleSpecInput,
  toScheduleSpec,
} from "./schedules.js";
export { type ClientTransport, createWeftTransport } from "./transport.js";
export type { ReconnectInfo, WatchOptions } from "./watch.js";
export { type NewTaskId, WorkflowBuilder, type WorkflowOptions, workflow } from "./workflow-builder.js";
export {
  loadWorkflowFile,
  parseWorkflowSpec,
  parseWorkflowText,
  WorkflowSpecError,
} from "./workflow-file.js";
export {
  type RetrySpec,
  type TaskOptions,
  type TaskSpec,
  type TimeoutsSpec,
  toWorkflowDefinition,
  type WorkflowSpec,
} from "./workflow-spec.js";
