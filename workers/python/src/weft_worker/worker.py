"""The worker: one Work stream (or a poll loop asking PollTask) that takes as many tasks as it has
free slots, runs each assignment's handler, and reports outputs on the stream (or in CompleteTasks
batches) and failures with FailTask."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf import duration_pb2

from .backoff import Backoff
from .completion_batcher import CompletionBatcher
from .execution import ExecutionDeps, Handler, TaskExecution
from .gen.weft.v1 import worker_service_pb2 as pb
from .gen.weft.v1.worker_service_pb2_grpc import WorkerServiceStub
from .health import DaemonHealth
from .logs import LOGGER_NAME, FieldsAdapter
from .rpc import error_fields, status_code
from .work_stream import WorkStream

#: Slack on top of the poll's wait before the client gives up on a silent daemon.
_POLL_TIMEOUT_MARGIN = 10.0
#: Most assignments one PollTask may ask for (the daemon's limit).
MAX_TASKS_PER_POLL = 256


def tasks_to_ask_for(concurrency: int, busy: int) -> int:
    """``max_tasks`` of the next PollTask: the free slots, at most :data:`MAX_TASKS_PER_POLL`; 0
    while every slot is busy (no poll then)."""
    return max(0, min(concurrency - busy, MAX_TASKS_PER_POLL))


class Worker:
    """Takes tasks of one task queue of weftd and runs their handlers, at most ``concurrency`` at once.

    By default the worker opens one Work stream: it grants the daemon a credit per free slot,
    starts each assignment as it arrives, and sends outputs on the stream, those of one turn of the
    event loop in one message; an output the stream could not deliver goes out with CompleteTasks.
    With ``stream=False``, or against a weftd without Work, one poll loop asks PollTask for as many
    tasks as there are free slots (at most 256 per call), and outputs go out batched with
    CompleteTasks (one CompleteTask per task against a weftd without it). Failures go out with
    FailTask.

    ``handlers`` maps the handler names tasks refer to onto functions ``fn(input, ctx)``: plain
    functions run in a thread pool, ``async def`` functions on the worker's event loop. Their
    return value (any JSON value) is the task's output; an exception fails the attempt, and a
    :class:`NonRetryableError` fails the task at once.

    Args:
        address: ``host:port`` of weftd (plain-text HTTP/2), or ``https://host:port`` for TLS.
        queue: Task queue to poll.
        handlers: Handlers by name; the worker only receives tasks whose handler it lists.
        concurrency: The most tasks whose handlers run at once (default 10).
        worker_id: Identity shown on task runs (default ``<hostname>:<pid>``).
        token: Bearer token sent with every call.
        poll_wait: Seconds each PollTask waits for a task; the daemon caps it (default 20).
        heartbeat_interval: Seconds between automatic heartbeats (default: a third of the task's
            heartbeat timeout).
        shutdown_grace: Seconds in-flight tasks get to finish on :meth:`stop` (default 30).
        max_threads: Threads for plain-function handlers (default ``concurrency``).
        retry_initial_delay: First delay, in seconds, before retrying a failed call; it doubles
            on each failure (default 0.1).
        retry_max_delay: Longest delay between retries, in seconds (default 5).
        report_attempts: How many times a task's output (CompleteTasks or CompleteTask) or failure
            (FailTask) is tried while the daemon is unavailable (default 5).
        logger: Logger (default ``logging.getLogger("weft_worker")``); records carry ``queue``
            and ``workerId``, and each task's ``runId``, ``taskId`` and ``attempt``.
        credentials: Channel credentials for TLS; implied by an ``https://`` address.
        stream: Take tasks and send outputs on a Work stream (default True); False polls with
            PollTask and completes with CompleteTasks.
    """

    def __init__(
        self,
        address: str,
        queue: str,
        handlers: Mapping[str, Handler],
        *,
        concurrency: int = 10,
        worker_id: str | None = None,
        token: str | None = None,
        poll_wait: float = 20.0,
        heartbeat_interval: float | None = None,
        shutdown_grace: float = 30.0,
        max_threads: int | None = None,
        retry_initial_delay: float = 0.1,
        retry_max_delay: float = 5.0,
        report_attempts: int = 5,
        logger: logging.Logger | None = None,
        credentials: grpc.ChannelCredentials | None = None,
        stream: bool = True,
    ) -> None:
        if not address:
            raise ValueError("Worker address must not be empty")
        if not queue:
            raise ValueError("Worker queue must not be empty")
        if not handlers:
            raise ValueError("Worker handlers must name at least one handler")
        for name, fn in handlers.items():
            if not callable(fn):
                raise TypeError(f'handler "{name}" is not callable')
        if not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"Worker concurrency must be a positive integer, got {concurrency!r}")
        if not isinstance(report_attempts, int) or report_attempts < 1:
            raise ValueError(f"Worker report_attempts must be a positive integer, got {report_attempts!r}")
        for label, seconds in [
            ("poll_wait", poll_wait),
            ("shutdown_grace", shutdown_grace),
            ("retry_initial_delay", retry_initial_delay),
            ("retry_max_delay", retry_max_delay),
        ]:
            if seconds < 0:
                raise ValueError(f"Worker {label} must not be negative, got {seconds!r}")
        if heartbeat_interval is not None and heartbeat_interval <= 0:
            raise ValueError(f"Worker heartbeat_interval must be positive, got {heartbeat_interval!r}")
        self._target, secure = _parse_address(address)
        self._credentials = credentials or (grpc.ssl_channel_credentials() if secure else None)
        self._queue = queue
        self._handlers = dict(handlers)
        self._concurrency = concurrency
        self._worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}"
        self._metadata: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._poll_wait = poll_wait
        self._heartbeat_interval = heartbeat_interval
        self._shutdown_grace = shutdown_grace
        self._max_threads = max_threads or concurrency
        self._retry_initial_delay = retry_initial_delay
        self._retry_max_delay = retry_max_delay
        self._report_attempts = report_attempts
        self._use_stream = stream
        #: Delivers outputs; holds the Work stream open now, if any (``stream``). Set by run_async.
        self._completions: CompletionBatcher | None = None
        self._logger = FieldsAdapter(logger or logging.getLogger(LOGGER_NAME), {"queue": queue, "workerId": self._worker_id})
        self._state = "idle"
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop_requested: asyncio.Event | None = None
        self._force: asyncio.Event | None = None
        self._pending_stop = 0
        self._polls: set[asyncio.Task[Any]] = set()
        #: Each started attempt, until its result is reported or given up.
        self._executions: dict[TaskExecution, asyncio.Task[None]] = {}
        #: Attempts whose handler has not settled yet: the slots in use.
        self._busy_slots = 0
        self._slot_freed: asyncio.Event | None = None
        #: Client interceptors of the worker's channel (tests observe calls with them).
        self._interceptors: Sequence[grpc.aio.ClientInterceptor] = ()

    @property
    def worker_id(self) -> str:
        """Identity the worker polls with."""
        return self._worker_id

    def run(self, *, install_signal_handlers: bool | None = None) -> None:
        """Takes tasks until :meth:`stop`; blocks. SIGTERM and SIGINT stop the worker gracefully (a second
        signal abandons in-flight tasks) when called from the main thread, unless told otherwise."""
        if install_signal_handlers is None:
            install_signal_handlers = threading.current_thread() is threading.main_thread()
        asyncio.run(self.run_async(install_signal_handlers=install_signal_handlers))

    async def run_async(self, *, install_signal_handlers: bool = False) -> None:
        """Takes tasks until :meth:`stop`, on the running event loop; returns once the worker is closed."""
        with self._lock:
            if self._state != "idle":
                raise RuntimeError("Worker.run() was already called")
            self._state = "running"
            self._loop = asyncio.get_running_loop()
            self._stop_requested = asyncio.Event()
            self._force = asyncio.Event()
            self._slot_freed = asyncio.Event()
            pending = self._pending_stop
        if install_signal_handlers:
            self._install_signal_handlers()
        for _ in range(pending):
            self._request_stop()
        channel = self._open_channel()
        executor = ThreadPoolExecutor(max_workers=self._max_threads, thread_name_prefix="weft-handler")
        stub = WorkerServiceStub(channel)
        health = DaemonHealth(self._logger)
        completions = self._completions = CompletionBatcher(stub, self._metadata, health, self._logger)
        deps = ExecutionDeps(
            stub=stub,
            handlers=self._handlers,
            worker_id=self._worker_id,
            executor=executor,
            health=health,
            logger=self._logger,
            metadata=self._metadata,
            heartbeat_interval=self._heartbeat_interval,
            report_attempts=self._report_attempts,
            retry_initial_delay=self._retry_initial_delay,
            retry_max_delay=self._retry_max_delay,
            completions=completions,
            on_handler_settled=self._free_slot,
        )
        self._logger.info(
            "worker polling", extra={"handlers": list(self._handlers), "concurrency": self._concurrency}
        )
        poll_loop = asyncio.create_task(self._stream_loop(deps) if self._use_stream else self._poll_loop(deps))
        try:
            await self._stop_requested.wait()
            self._state = "closing"
            self._logger.info(
                "worker closing", extra={"inFlight": len(self._executions), "graceSeconds": self._shutdown_grace}
            )
            for poll in list(self._polls):
                poll.cancel()
            self._slot_freed.set()
            if completions.stream is not None:
                # The stream half-closes: outputs sent are answered, tasks the daemon took arrive.
                completions.stream.wake()
            drained: asyncio.Future[Any] = asyncio.ensure_future(self._drain(poll_loop))
            forced: asyncio.Future[Any] = asyncio.ensure_future(self._force.wait())
            done, _ = await asyncio.wait(
                {drained, forced}, timeout=self._shutdown_grace, return_when=asyncio.FIRST_COMPLETED
            )
            forced.cancel()
            if drained not in done:
                running = list(self._executions.items())
                for execution, _ in running:
                    execution.abandon(self._shutdown_grace)
                drained.cancel()
                for _, task in running:
                    task.cancel()
                await asyncio.gather(drained, *(task for _, task in running), return_exceptions=True)
        finally:
            self._state = "closed"
            if install_signal_handlers:
                self._remove_signal_handlers()
            poll_loop.cancel()
            for task in self._executions.values():
                task.cancel()
            completions.close()
            executor.shutdown(wait=False, cancel_futures=True)
            await channel.close(grace=None)
            self._logger.info("worker closed")

    def stop(self) -> None:
        """Stops gracefully, from any thread: no new tasks are taken; in-flight tasks get ``shutdown_grace``
        to finish, then their cancellation flag is set and they are abandoned. A second call
        abandons them at once."""
        with self._lock:
            loop = self._loop
            if loop is None:
                self._pending_stop += 1
                return
        if self._state == "closed":
            return
        try:
            loop.call_soon_threadsafe(self._request_stop)
        except RuntimeError:
            pass  # The loop already closed: the worker is done.

    def _request_stop(self) -> None:
        assert self._stop_requested is not None and self._force is not None
        if self._stop_requested.is_set():
            self._logger.warning("stop requested again; abandoning in-flight tasks")
            self._force.set()
        self._stop_requested.set()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)

    def _remove_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        self._logger.info("signal received; closing the worker", extra={"signal": sig.name})
        self._request_stop()

    def _open_channel(self) -> grpc.aio.Channel:
        # Keepalive pings notice a dead connection (a cut link) while a poll waits.
        options = [
            ("grpc.keepalive_time_ms", 10_000),
            ("grpc.keepalive_timeout_ms", 5_000),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.max_pings_without_data", 0),
            ("grpc.initial_reconnect_backoff_ms", 100),
            ("grpc.max_reconnect_backoff_ms", int(self._retry_max_delay * 1000) or 1000),
        ]
        interceptors = list(self._interceptors) or None
        if self._credentials is not None:
            return grpc.aio.secure_channel(self._target, self._credentials, options=options, interceptors=interceptors)
        return grpc.aio.insecure_channel(self._target, options=options, interceptors=interceptors)

    async def _poll_loop(self, deps: ExecutionDeps) -> None:
        request = pb.PollTaskRequest(
            queue=self._queue,
            worker_id=self._worker_id,
            handlers=list(self._handlers),
            wait=duration_pb2.Duration(seconds=int(self._poll_wait), nanos=int(self._poll_wait % 1 * 1e9)),
        )
        backoff = Backoff(self._retry_initial_delay, self._retry_max_delay)
        while self._state == "running":
            max_tasks = tasks_to_ask_for(self._concurrency, self._busy_slots)
            if max_tasks == 0:
                await self._wait_for_slot()
                continue
            request.max_tasks = max_tasks
            poll = asyncio.create_task(self._poll(deps, request))
            self._polls.add(poll)
            try:
                response = await poll
            except asyncio.CancelledError:
                if self._state != "running":
                    break
                raise
            except Exception as err:  # noqa: BLE001 - the daemon is down or refuses: back off
                if self._state != "running":
                    break
                deps.health.failed("PollTask", err)
                await self._sleep(backoff.next())
                continue
            finally:
                self._polls.discard(poll)
            deps.health.ok()
            backoff.reset()
            # Assignments that arrive while closing are still run: this worker holds their leases.
            if response.HasField("assignment"):
                self._start(response.assignment, deps)
            for assignment in response.more_assignments:
                self._start(assignment, deps)

    async def _stream_loop(self, deps: ExecutionDeps) -> None:
        """Takes tasks over Work streams until the worker closes, opening a new stream with backoff
        when one breaks; against a weftd without Work (UNIMPLEMENTED), polls with PollTask instead."""
        backoff = Backoff(self._retry_initial_delay, self._retry_max_delay)
        first = pb.WorkRequest(queue=self._queue, worker_id=self._worker_id, handlers=list(self._handlers))
        write_races = 0
        while self._state == "running":
            stream = WorkStream(
                deps.stub.Work(metadata=self._metadata),
                first,
                free_slots=lambda: self._concurrency - self._busy_slots,
                start=lambda assignment: self._start(assignment, deps),
                stopping=lambda: self._state != "running",
                completions=deps.completions,
                health=deps.health,
            )
            deps.completions.stream = stream
            try:
                received = await stream.run()
                err: BaseException | None = None
            except asyncio.CancelledError:
                raise
            except Exception as error:  # noqa: BLE001 - the daemon is down or refuses: back off
                received, err = False, error
            finally:
                deps.completions.stream = None
            if err is not None and not received and _lost_to_a_write_race(err) and write_races < _MAX_WRITE_RACES:
                # grpcio replaces the status of a stream the daemon ended at once (UNIMPLEMENTED from
                # an older weftd) with this one when a write meets the end (grpc/grpc#36066): the
                # stream is opened again at once to learn the real answer.
                write_races += 1
                self._logger.debug("the Work stream ended before its first answer; opening it again", extra=error_fields(err))
                continue
            write_races = 0
            if err is not None and status_code(err) == grpc.StatusCode.UNIMPLEMENTED:
                self._logger.info("the daemon does not implement Work (an older weftd); polling with PollTask")
                await self._poll_loop(deps)
                return
            if self._state != "running":
                return
            if received:
                backoff.reset()
            if err is not None:
                deps.health.failed("Work", err)
            await self._sleep(backoff.next())

    async def _wait_for_slot(self) -> None:
        """Returns once a slot frees or the worker closes, one turn of the event loop later: handlers
        that settle together free their slots for one poll instead of a poll each."""
        assert self._slot_freed is not None
        self._slot_freed.clear()
        await self._slot_freed.wait()
        await asyncio.sleep(0)

    def _free_slot(self) -> None:
        assert self._slot_freed is not None
        self._busy_slots -= 1
        self._slot_freed.set()
        stream = self._completions.stream if self._completions is not None else None
        if stream is not None:
            stream.wake()

    def _start(self, assignment: pb.TaskAssignment, deps: ExecutionDeps) -> None:
        execution = TaskExecution(assignment, deps)
        self._busy_slots += 1
        task = asyncio.get_running_loop().create_task(execution.run())
        self._executions[execution] = task
        task.add_done_callback(lambda _: self._executions.pop(execution, None))

    async def _drain(self, poll_loop: asyncio.Task[None]) -> None:
        """Returns once polling stopped and every started attempt reported its result."""
        await poll_loop
        while self._executions:
            await asyncio.gather(*self._executions.values())

    async def _poll(self, deps: ExecutionDeps, request: pb.PollTaskRequest) -> pb.PollTaskResponse:
        response: pb.PollTaskResponse = await deps.stub.PollTask(
            request, timeout=self._poll_wait + _POLL_TIMEOUT_MARGIN, metadata=self._metadata
        )
        return response

    async def _sleep(self, seconds: float) -> None:
        assert self._stop_requested is not None
        try:
            await asyncio.wait_for(self._stop_requested.wait(), seconds)
        except TimeoutError:
            pass


#: Streams opened again at once after :func:`_lost_to_a_write_race`, before the failure counts.
_MAX_WRITE_RACES = 3


def _lost_to_a_write_race(err: BaseException) -> bool:
    """Whether a stream failed with the status grpcio gives a write that met the stream's end."""
    return (
        status_code(err) == grpc.StatusCode.INTERNAL
        and isinstance(err, grpc.RpcError)
        and (err.details() or "").startswith("Internal error from Core")
    )


def _parse_address(address: str) -> tuple[str, bool]:
    """``host:port``, ``http://host:port`` or ``https://host:port`` → (gRPC target, TLS?)."""
    for scheme, secure in (("https://", True), ("http://", False)):
        if address.startswith(scheme):
            return address[len(scheme) :].rstrip("/"), secure
    return address, False
