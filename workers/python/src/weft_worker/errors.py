"""Errors a handler raises or sees."""

from __future__ import annotations


class NonRetryableError(Exception):
    """Raised by a handler to fail the task at once, whatever attempts its retry policy has left.

    The task error's type is ``type`` when given, else the class name (so subclasses report their
    own name).
    """

    def __init__(self, message: str, *, type: str | None = None) -> None:
        super().__init__(message)
        self.type = type or self.__class__.__name__


class CancelReason:
    """Why a task's cancellation flag was set (the values of ``TaskContext.cancel_reason``)."""

    #: The run was cancelled: the daemon answered ``cancel_requested`` to a heartbeat.
    RUN_CANCELLED = "run_cancelled"
    #: The lease is gone (expired or reassigned): another worker may run the task, and this
    #: attempt's result is not reported.
    LEASE_LOST = "lease_lost"
    #: The worker's shutdown grace period ran out: the task is abandoned and its lease expires.
    WORKER_SHUTDOWN = "worker_shutdown"
