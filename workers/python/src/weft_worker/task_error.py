"""Describes what a handler raised, as reported with FailTask."""

from __future__ import annotations

import traceback
from dataclasses import dataclass

from .errors import NonRetryableError
from .gen.weft.v1 import run_pb2


@dataclass(frozen=True)
class TaskFailure:
    """A failed attempt: the error and whether another attempt may help (None: the daemon's
    default, retryable)."""

    error: run_pb2.TaskError
    retryable: bool | None = None


def task_failure_from(exc: BaseException) -> TaskFailure:
    """Type is the exception's ``type`` attribute if it is a non-empty string, else its class
    name; details is the traceback."""
    declared = getattr(exc, "type", None)
    error_type = declared if isinstance(declared, str) and declared else type(exc).__name__
    details = "".join(traceback.format_exception(exc))
    error = run_pb2.TaskError(type=error_type, message=str(exc), details=details)
    return TaskFailure(error, retryable=False if isinstance(exc, NonRetryableError) else None)
