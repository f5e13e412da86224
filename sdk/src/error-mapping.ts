import { Code, ConnectError } from "@connectrpc/connect";
import {
  DeadLetterNotFoundError,
  type FieldViolation,
  InvalidArgumentError,
  InvalidWorkflowError,
  RunNotFoundError,
  ScheduleNotFoundError,
  WeftError,
  WeftUnavailableError,
  WorkflowNotFoundError,
} from "./errors.js";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";

/** What a call was about, so that its error can name it. */
export interface CallContext {
  /** The call submitted a workflow definition: INVALID_ARGUMENT becomes {@link InvalidWorkflowError}. */
  submitting?: boolean;
  /** The workflow the call named. */
  workflow?: string;
  /** The workflow version the call named (0: latest). */
  version?: number;
  /** The run the call named. */
  runId?: string;
  /** The schedule the call named. */
  scheduleId?: string;
}

/** "workflow "x" …", or with the field of a batch in front: "requests[3].workflow: workflow "x" …". */
const WORKFLOW_MESSAGE = /^(?:[\w.[\]]+: )?workflow "([^"]*)"/;
const RUN_MESSAGE = /^run "([^"]*)"/;
const DEAD_LETTER_MESSAGE = /^dead letter "([^"]*)"/;
const SCHEDULE_MESSAGE = /^schedule "([^"]*)"/;

/**
 * Turns anything a Connect call threw into the matching {@link WeftError} subclass, from the gRPC
 * code, the google.rpc.BadRequest detail and what the call was about. A WeftError is returned as is.
 */
export function toWeftError(err: unknown, context: CallContext = {}): WeftError {
  if (err instanceof WeftError) return err;
  const ce = ConnectError.from(err);
  const message = ce.rawMessage;
  const options = { cause: ce };
  switch (ce.code) {
    case Code.NotFound: {
      const deadLetter = DEAD_LETTER_MESSAGE.exec(message)?.[1];
      if (deadLetter !== undefined) return new DeadLetterNotFoundError(message, deadLetter, options);
      const scheduleId = SCHEDULE_MESSAGE.exec(message)?.[1];
      if (scheduleId !== undefined) return new ScheduleNotFoundError(message, scheduleId, options);
      const workflow = WORKFLOW_MESSAGE.exec(message)?.[1] ?? context.workflow;
      const runId = RUN_MESSAGE.exec(message)?.[1] ?? context.runId;
      if (RUN_MESSAGE.test(message) || (runId !== undefined && !WORKFLOW_MESSAGE.test(message))) {
        return new RunNotFoundError(message, runId ?? "", options);
      }
      if (workflow !== undefined)
        return new WorkflowNotFoundError(message, workflow, context.version, options);
      return new WeftError(message, ce.code, options);
    }
    case Code.InvalidArgument: {
      const violations: FieldViolation[] = ce
        .findDetails(BadRequestSchema)
        .flatMap((d) => d.fieldViolations.map((v) => ({ field: v.field, description: v.description })));
      return context.submitting === true
        ? new InvalidWorkflowError(message, violations, options)
        : new InvalidArgumentError(message, violations, options);
    }
    case Code.Unavailable:
      return new WeftUnavailableError(message, ce.code, options);
    default:
      return new WeftError(message, ce.code, options);
  }
}
