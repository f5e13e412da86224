"""What a handler knows about the attempt it runs, and how it talks back to the daemon."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .logs import FieldsAdapter


@dataclass(frozen=True)
class TaskInfo:
    """The assignment's facts, as plain Python values."""

    run_id: str
    task_id: str
    workflow: str
    workflow_version: int
    handler: str
    queue: str
    attempt: int
    max_attempts: int
    lease_id: str
    input: Any
    run_input: Any
    parent_outputs: Mapping[str, Any]
    attempt_deadline: datetime | None


@dataclass
class _Cancellation:
    loop: asyncio.AbstractEventLoop
    event: threading.Event = field(default_factory=threading.Event)
    async_event: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str | None = None


class TaskContext:
    """Passed to every handler as its second argument.

    Plain functions run in the worker's thread pool and async functions on its event loop; both
    may use every member. The cancellation flag is cooperative: the worker sets it and the handler
    decides when to stop.
    """

    def __init__(
        self,
        info: TaskInfo,
        *,
        worker_id: str,
        logger: FieldsAdapter,
        loop: asyncio.AbstractEventLoop,
        beat: Callable[[Any | None], None],
    ) -> None:
        self._info = info
        self._worker_id = worker_id
        self._logger = logger
        self._beat = beat
        self._cancellation = _Cancellation(loop)

    @property
    def run_id(self) -> str:
        """Run id."""
        return self._info.run_id

    @property
    def task_id(self) -> str:
        """Task id within the workflow."""
        return self._info.task_id

    @property
    def workflow(self) -> str:
        """Workflow name."""
        return self._info.workflow

    @property
    def workflow_version(self) -> int:
        """Workflow version the run executes."""
        return self._info.workflow_version

    @property
    def handler(self) -> str:
        """Handler name the task asked for."""
        return self._info.handler

    @property
    def queue(self) -> str:
        """Task queue the task came from."""
        return self._info.queue

    @property
    def attempt(self) -> int:
        """Attempt number, starting at 1."""
        return self._info.attempt

    @property
    def max_attempts(self) -> int:
        """Attempts allowed by the task's retry policy."""
        return self._info.max_attempts

    @property
    def input(self) -> Any:
        """The task's static input (also passed as the handler's first argument)."""
        return self._info.input

    @property
    def run_input(self) -> Any:
        """The run's input."""
        return self._info.run_input

    @property
    def parent_outputs(self) -> Mapping[str, Any]:
        """Outputs of the task's parents, keyed by parent task id."""
        return self._info.parent_outputs

    @property
    def attempt_deadline(self) -> datetime | None:
        """When the attempt's start-to-close timeout fires, if it has one."""
        return self._info.attempt_deadline

    @property
    def worker_id(self) -> str:
        """Identity of the worker running the task."""
        return self._worker_id

    @property
    def logger(self) -> FieldsAdapter:
        """Logger with ``runId``, ``taskId``, ``attempt``, ``queue`` and ``workerId`` fields."""
        return self._logger

    @property
    def cancelled(self) -> bool:
        """True once the run was cancelled, the lease was lost or the shutdown grace ran out."""
        return self._cancellation.event.is_set()

    @property
    def cancel_event(self) -> threading.Event:
        """Set on cancellation; a thread handler can ``cancel_event.wait(timeout)`` on it."""
        return self._cancellation.event

    @property
    def cancel_reason(self) -> str | None:
        """Why the flag was set: a :class:`~weft_worker.CancelReason` value, or None."""
        return self._cancellation.reason

    async def wait_cancelled(self) -> str:
        """Waits (in an async handler) until the task is cancelled; returns the reason."""
        await self._cancellation.async_event.wait()
        return self._cancellation.reason or ""

    def heartbeat(self, progress: Any = None) -> None:
        """Sends a heartbeat soon, with an optional JSON progress report that later automatic
        heartbeats repeat. Heartbeats are also sent automatically; a lost lease or a cancellation
        shows on :attr:`cancelled`. Raises TypeError when ``progress`` is not JSON-serialisable."""
        self._beat(progress)

    def _cancel(self, reason: str) -> None:
        """Sets the flag, on the worker's event loop; the first reason wins."""
        c = self._cancellation
        if c.reason is None:
            c.reason = reason
        c.event.set()
        c.async_event.set()
