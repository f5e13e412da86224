"""How the worker reads a failed call."""

from __future__ import annotations

from typing import Any

import grpc

# The daemon could not be reached or did not answer in time: the call may succeed if repeated.
# A connection the daemon dropped (it restarted) shows as UNAVAILABLE or CANCELLED.
_TRANSIENT = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.ABORTED,
    grpc.StatusCode.CANCELLED,
}
_LEASE_LOST = {grpc.StatusCode.FAILED_PRECONDITION, grpc.StatusCode.NOT_FOUND}


def status_code(err: BaseException) -> grpc.StatusCode:
    """The status code of a failed call; UNKNOWN for anything that is not an RPC error."""
    if isinstance(err, grpc.RpcError):
        code = err.code()
        if isinstance(code, grpc.StatusCode):
            return code
    return grpc.StatusCode.UNKNOWN


def is_transient(err: BaseException) -> bool:
    """Whether a failed call is worth repeating once the daemon is reachable again."""
    return status_code(err) in _TRANSIENT


def is_lease_lost(err: BaseException) -> bool:
    """Whether the daemon no longer honours the lease the call was made with."""
    return status_code(err) in _LEASE_LOST


def error_fields(err: BaseException) -> dict[str, Any]:
    """Log fields describing a failed call: its code name and message."""
    details = err.details() if isinstance(err, grpc.RpcError) else str(err)
    return {"code": status_code(err).name, "error": details or str(err)}
