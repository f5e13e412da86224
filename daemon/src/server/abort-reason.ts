/**
 * Makes `AbortController.prototype.abort()` without a reason abort with one shared `AbortError`
 * instead of a new one.
 *
 * Connect aborts two signals of every call once the call is over (the call context's and the
 * request's), both without a reason, and Node then builds a `DOMException` for each, capturing a
 * stack trace: about 2 % of weftd's CPU, spent before a unary call's trailers are written. The
 * shared reason reads the same to every listener (a `DOMException` named "AbortError" with Node's
 * message); only its stack, which nothing in weftd reads, no longer points at the caller. An abort
 * with a reason is unchanged. Calling it again does nothing.
 */
export function shareDefaultAbortReason(): void {
  const proto = AbortController.prototype as AbortController & { [shared]?: true };
  if (proto[shared] === true) return;
  const abort = proto.abort;
  const aborted = new DOMException("This operation was aborted", "AbortError");
  Object.defineProperty(proto, "abort", {
    configurable: true,
    writable: true,
    value: function (this: AbortController, reason?: unknown) {
      abort.call(this, reason === undefined ? aborted : reason);
    },
  });
  proto[shared] = true;
}

const shared = Symbol("weft.sharedAbortReason");
