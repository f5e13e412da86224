import { EventType, fromValue, type RunEvent, RunStatus } from "@weft/sdk";
import { time } from "./format.js";

/**
 * One event as a flat JSON object for `weft watch --json`: names without their enum prefixes,
 * sequence as a number, and only the fields the event sets.
 */
export function eventJson(e: RunEvent): Record<string, unknown> {
  const out: Record<string, unknown> = {
    sequence: Number(e.sequence),
    type: EventType[e.type] ?? String(e.type),
    time: time(e.time),
    runId: e.runId,
  };
  if (e.taskId !== "") out.taskId = e.taskId;
  if (e.attempt !== 0) out.attempt = e.attempt;
  out.runStatus = RunStatus[e.runStatus] ?? String(e.runStatus);
  if (e.workerId !== "") out.workerId = e.workerId;
  if (e.output !== undefined) out.output = fromValue(e.output);
  if (e.error !== undefined) out.error = { type: e.error.type, message: e.error.message };
  if (e.nextAttemptTime !== undefined) out.nextAttemptTime = time(e.nextAttemptTime);
  if (e.message !== "") out.message = e.message;
  return out;
}
