"""One attempt of one task under its lease: runs the handler, heartbeats, reports the result."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timezone
from typing import Any

from .completion_batcher import CompletionBatcher
from .context import TaskContext, TaskInfo
from .errors import CancelReason
from .gen.weft.v1 import run_pb2
from .gen.weft.v1 import worker_service_pb2 as pb
from .gen.weft.v1.worker_service_pb2_grpc import WorkerServiceStub
from .health import DaemonHealth
from .heartbeater import Heartbeater, heartbeat_interval
from .json_value import from_proto_value, to_proto_value
from .logs import FieldsAdapter
from .reporter import ReportPolicy, report
from .rpc import error_fields
from .task_error import TaskFailure, task_failure_from

#: A handler: ``handler(input, ctx)``, a plain function or an ``async def``; returns a JSON value.
Handler = Callable[[Any, TaskContext], Any]


@dataclass(frozen=True)
class ExecutionDeps:
    """What an execution shares with its worker."""

    stub: WorkerServiceStub
    handlers: Mapping[str, Handler]
    worker_id: str
    executor: ThreadPoolExecutor
    health: DaemonHealth
    logger: FieldsAdapter
    metadata: tuple[tuple[str, str], ...]
    heartbeat_interval: float | None
    report_attempts: int
    retry_initial_delay: float
    retry_max_delay: float
    #: Delivers outputs (CompleteTasks, batched across the worker's tasks).
    completions: CompletionBatcher
    #: Called once the handler has settled: the task's slot is free while its result is reported.
    on_handler_settled: Callable[[], None]


class TaskExecution:
    """Runs one assignment to the end; :meth:`run` never raises (except on cancellation)."""

    def __init__(self, assignment: pb.TaskAssignment, deps: ExecutionDeps) -> None:
        a = assignment
        self._assignment = a
        self._deps = deps
        self._logger = deps.logger.child(runId=a.run_id, taskId=a.task_id, attempt=a.attempt, handler=a.handler)
        self._loop = asyncio.get_running_loop()
        self._lease_lost = False
        self._abandoned = False
        self._handler_task: asyncio.Future[Any] | None = None
        self._heartbeater = Heartbeater(
            stub=deps.stub,
            lease_id=a.lease_id,
            interval=heartbeat_interval(a, deps.heartbeat_interval),
            health=deps.health,
            metadata=deps.metadata,
            on_cancel_requested=self._on_cancel_requested,
            on_lease_lost=self._on_lease_lost,
        )
        self._task_info = self._info()
        self._context = TaskContext(
            self._task_info,
            worker_id=deps.worker_id,
            logger=self._logger,
            loop=self._loop,
            beat=self._beat,
        )

    async def run(self) -> None:
        """Runs the handler, then reports its result unless the lease was lost or the task abandoned."""
        started = time.monotonic()
        self._logger.debug("task started")
        try:
            outcome = await self._execute()
        finally:
            self._heartbeater.stop()
            self._deps.on_handler_settled()
        if self._abandoned:
            return
        if self._lease_lost:
            self._logger.warning("lease lost; the result of this attempt is not reported")
            return
        duration_ms = round((time.monotonic() - started) * 1000)
        lease_id = self._assignment.lease_id
        deps = self._deps
        policy = ReportPolicy(
            logger=self._logger,
            health=deps.health,
            attempts=deps.report_attempts,
            initial_delay=deps.retry_initial_delay,
            max_delay=deps.retry_max_delay,
            abandoned=lambda: self._abandoned,
        )
        if not isinstance(outcome, TaskFailure):
            self._logger.info("task completed", extra={"durationMs": duration_ms})
            await deps.completions.complete(lease_id, outcome, policy)
            return
        retryable = True if outcome.retryable is None else outcome.retryable
        self._logger.warning(
            "task failed",
            extra={
                "durationMs": duration_ms,
                "errorType": outcome.error.type,
                "error": outcome.error.message,
                "retryable": retryable,
            },
        )
        request = pb.FailTaskRequest(lease_id=lease_id, error=outcome.error)
        if outcome.retryable is not None:
            request.retryable = outcome.retryable
        await report("FailTask", deps.stub.FailTask, request, deps.metadata, policy)

    def abandon(self, grace: float) -> None:
        """Sets the cancellation flag and drops the result: the worker's grace period ran out."""
        if self._abandoned:
            return
        self._abandoned = True
        self._heartbeater.stop()
        self._logger.warning(
            "task abandoned at shutdown; its lease will expire on the daemon", extra={"graceSeconds": grace}
        )
        self._context._cancel(CancelReason.WORKER_SHUTDOWN)
        if self._handler_task is not None:
            # An async handler is cancelled; a thread cannot be, and is left to finish on its own.
            self._handler_task.cancel()

    async def _execute(self) -> Any:
        name = self._assignment.handler
        handler = self._deps.handlers.get(name)
        if handler is None:
            known = ", ".join(self._deps.handlers)
            message = f'worker {self._deps.worker_id} has no handler "{name}" (it has: {known})'
            return TaskFailure(run_pb2.TaskError(type="HandlerNotFound", message=message), retryable=False)
        self._heartbeater.start()
        try:
            result = await self._call(handler)
        except asyncio.CancelledError:
            if self._abandoned:
                return None
            raise
        except Exception as exc:  # noqa: BLE001 - a handler's failure is the task's failure
            return task_failure_from(exc)
        try:
            return to_proto_value(result)
        except TypeError as err:
            message = f"the handler's output is not JSON-serialisable: {err}"
            return TaskFailure(run_pb2.TaskError(type="OutputNotSerializable", message=message), retryable=False)

    async def _call(self, handler: Handler) -> Any:
        value = self._task_info.input
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
            getattr(handler, "__call__", None)
        ):
            self._handler_task = asyncio.ensure_future(handler(value, self._context))
            return await self._handler_task
        call = functools.partial(contextvars.copy_context().run, handler, value, self._context)
        self._handler_task = self._loop.run_in_executor(self._deps.executor, call)
        result = await self._handler_task
        if inspect.isawaitable(result):
            return await _as_awaitable(result)
        return result

    def _info(self) -> TaskInfo:
        a = self._assignment
        deadline = a.attempt_deadline.ToDatetime(tzinfo=timezone.utc) if a.HasField("attempt_deadline") else None
        return TaskInfo(
            run_id=a.run_id,
            task_id=a.task_id,
            workflow=a.workflow,
            workflow_version=a.workflow_version,
            handler=a.handler,
            queue=a.queue,
            attempt=a.attempt,
            max_attempts=a.max_attempts,
            lease_id=a.lease_id,
            input=from_proto_value(a.input) if a.HasField("input") else None,
            run_input=from_proto_value(a.run_input) if a.HasField("run_input") else None,
            parent_outputs={k: from_proto_value(v) for k, v in a.parent_outputs.items()},
            attempt_deadline=deadline,
        )

    def _beat(self, progress: Any) -> None:
        value = None if progress is None else to_proto_value(progress)
        self._loop.call_soon_threadsafe(self._heartbeater.beat_soon, value)

    def _on_cancel_requested(self) -> None:
        # Heartbeats stop: the daemon has said all it will say about this attempt.
        self._heartbeater.stop()
        self._logger.info("run cancelled; setting the task's cancellation flag")
        self._context._cancel(CancelReason.RUN_CANCELLED)

    def _on_lease_lost(self, err: BaseException) -> None:
        self._lease_lost = True
        self._heartbeater.stop()
        self._logger.warning("lease lost on heartbeat; setting the task's cancellation flag", extra=error_fields(err))
        self._context._cancel(CancelReason.LEASE_LOST)


async def _as_awaitable(value: Any) -> Any:
    return await value
