"""One attempt of one task under its lease: runs the handler, heartbeats, reports the result."""

from __future__ import annotations

import asyncio
import contextvars
import functools
import inspect
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timezone
from typing import Any

from .backoff import Backoff
from .context import TaskContext, TaskInfo
from .errors import CancelReason
from .gen.weft.v1 import run_pb2
from .gen.weft.v1 import worker_service_pb2 as pb
from .gen.weft.v1.worker_service_pb2_grpc import WorkerServiceStub
from .health import DaemonHealth
from .heartbeater import Heartbeater, heartbeat_interval
from .json_value import from_proto_value, to_proto_value
from .logs import FieldsAdapter
from .rpc import error_fields, is_lease_lost, is_transient
from .task_error import TaskFailure, task_failure_from

#: A handler: ``handler(input, ctx)``, a plain function or an ``async def``; returns a JSON value.
Handler = Callable[[Any, TaskContext], Any]

_REPORT_TIMEOUT = 10.0


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
        outcome = await self._execute()
        self._heartbeater.stop()
        if self._abandoned:
            return
        if self._lease_lost:
            self._logger.warning("lease lost; the result of this attempt is not reported")
            return
        duration_ms = round((time.monotonic() - started) * 1000)
        lease_id = self._assignment.lease_id
        if not isinstance(outcome, TaskFailure):
            self._logger.info("task completed", extra={"durationMs": duration_ms})
            request: Any = pb.CompleteTaskRequest(lease_id=lease_id, output=outcome)
            await self._report("CompleteTask", self._deps.stub.CompleteTask, request)
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
        await self._report("FailTask", self._deps.stub.FailTask, request)

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

    async def _report(self, rpc: str, call: Callable[..., Awaitable[Any]], request: Any) -> None:
        """Delivers a result, retrying while the daemon is unavailable (the daemon deduplicates by
        lease, so a repeat is harmless). An undeliverable result is logged; its lease expires."""
        backoff = Backoff(self._deps.retry_initial_delay, self._deps.retry_max_delay)
        attempt = 1
        while True:
            try:
                await call(request, timeout=_REPORT_TIMEOUT, metadata=self._deps.metadata)
                self._deps.health.ok()
                return
            except asyncio.CancelledError:
                raise
            except Exception as err:  # noqa: BLE001 - classified below
                if is_lease_lost(err):
                    self._logger.warning("lease lost; the result was not recorded", extra={"rpc": rpc, **error_fields(err)})
                    return
                if not is_transient(err) or attempt >= self._deps.report_attempts or self._abandoned:
                    self._logger.error(
                        f"{rpc} failed; the result was not recorded and the lease will expire on the daemon",
                        extra={"rpc": rpc, "attempts": attempt, **error_fields(err)},
                    )
                    return
                self._deps.health.failed(rpc, err)
                await asyncio.sleep(backoff.next())
                attempt += 1


async def _as_awaitable(value: Any) -> Any:
    return await value
