import { Code, ConnectError } from "@connectrpc/connect";

/**
 * Codes that mean the daemon could not be reached or did not answer in time: the call may succeed
 * if repeated. Connect reports a reset connection as ABORTED and a stream the daemon dropped (it
 * restarted) as CANCELED; the worker's own cancellations never get here.
 */
const transientCodes: ReadonlySet<Code> = new Set([
  Code.Unavailable,
  Code.DeadlineExceeded,
  Code.Aborted,
  Code.Canceled,
]);

/** Whether a failed call is worth repeating once the daemon is reachable again. */
export function isTransient(err: unknown): boolean {
  return transientCodes.has(ConnectError.from(err).code);
}

/** Whether the daemon no longer honours the lease the call was made with. */
export function isLeaseLost(err: unknown): boolean {
  const code = ConnectError.from(err).code;
  return code === Code.FailedPrecondition || code === Code.NotFound;
}

/** Log fields describing a failed call: its code name and message. */
export function rpcErrorFields(err: unknown): { code: string; error: string } {
  const ce = ConnectError.from(err);
  return { code: Code[ce.code], error: ce.rawMessage };
}
