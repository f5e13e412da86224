"""Delivers a worker's task outputs in CompleteTasks batches, without adding latency."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import grpc
from google.protobuf import struct_pb2

from .backoff import Backoff
from .gen.weft.v1 import worker_service_pb2 as pb
from .gen.weft.v1.worker_service_pb2_grpc import WorkerServiceStub
from .health import DaemonHealth
from .logs import FieldsAdapter
from .reporter import REPORT_TIMEOUT, ReportPolicy, report, should_retry_report
from .rpc import status_code

if TYPE_CHECKING:
    from .work_stream import WorkStream

#: Most completions in one CompleteTasks call (the daemon's limit).
MAX_COMPLETIONS_PER_CALL = 1000

_CODES = {code.value[0]: code for code in grpc.StatusCode}


class CompletionError(grpc.RpcError):
    """The error CompleteTask would have raised for one completion of a CompleteTasks call."""

    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self._code = code
        self._details = details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details


def result_error(result: pb.CompleteTaskResult | None, lease_id: str) -> CompletionError | None:
    """The error of one completion's result (None: recorded). A missing or mismatched result is an
    INTERNAL error; a code number grpc does not know is UNKNOWN."""
    if result is None or result.lease_id != lease_id:
        return CompletionError(grpc.StatusCode.INTERNAL, f"CompleteTasks answered no result for lease {lease_id}")
    if result.code == 0:
        return None
    return CompletionError(_CODES.get(result.code, grpc.StatusCode.UNKNOWN), result.message)


@dataclass
class Pending:
    """A completion waiting for (or between) deliveries."""

    lease_id: str
    output: struct_pb2.Value
    policy: ReportPolicy
    backoff: Backoff
    #: Resolved once the output is recorded or given up; cancelled when the task is abandoned.
    done: asyncio.Future[None]
    #: Deliveries tried so far.
    attempts: int = field(default=0)

    def finish(self) -> None:
        if not self.done.done():
            self.done.set_result(None)


class CompletionBatcher:
    """Sends a completion at once when no CompleteTasks call is in flight; those made while one is in
    flight go out together in the next call, as soon as it returns (at most 1,000 per call). Each
    completion is answered, retried and logged on its own, as a CompleteTask of its own would be.
    Against a daemon without CompleteTasks (UNIMPLEMENTED: an older weftd) it falls back to one
    CompleteTask per task for the rest of its life. Lives on the worker's event loop."""

    def __init__(
        self,
        stub: WorkerServiceStub,
        metadata: tuple[tuple[str, str], ...],
        health: DaemonHealth,
        logger: FieldsAdapter,
    ) -> None:
        self._stub = stub
        self._metadata = metadata
        self._health = health
        self._logger = logger
        self._queued: deque[Pending] = deque()
        self._sending = False
        self._batched = True
        self._tasks: set[asyncio.Task[Any]] = set()
        #: The worker's Work stream while one is open: outputs go out on it first.
        self.stream: WorkStream | None = None

    async def complete(self, lease_id: str, output: struct_pb2.Value, policy: ReportPolicy) -> None:
        """Delivers the output of the task holding ``lease_id``, on the Work stream when one is open,
        else with CompleteTasks; returns once it is recorded or given up. Cancelling the caller drops
        the output if it has not gone out yet."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        pending = Pending(lease_id, output, policy, Backoff(policy.initial_delay, policy.max_delay), done)
        if self.stream is None or not self.stream.offer(pending):
            self._enqueue(pending)
        await done

    def take_over(self, pending: Pending, err: BaseException | None = None, rpc: str = "Work") -> None:
        """Delivers an output the Work stream could not: unanswered (``err`` None), or answered with
        ``err`` by ``rpc``, which this batcher retries or gives up as it would its own."""
        if err is None:
            if not pending.done.done():
                self._enqueue(pending)
            return
        self._settle(pending, err, rpc)

    def close(self) -> None:
        """Stops every delivery in progress (the worker is closed)."""
        for task in list(self._tasks):
            task.cancel()
        for pending in self._queued:
            pending.done.cancel()
        self._queued.clear()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _enqueue(self, pending: Pending) -> None:
        if not self._batched:
            self._complete_one(pending)
            return
        self._queued.append(pending)
        if not self._sending:
            self._sending = True
            self._spawn(self._send_queued())

    async def _send_queued(self) -> None:
        """Sends what is queued, one call at a time, until the queue is empty."""
        try:
            while self._queued and self._batched:
                batch: list[Pending] = []
                while self._queued and len(batch) < MAX_COMPLETIONS_PER_CALL:
                    pending = self._queued.popleft()
                    # An abandoned task's output that has not gone out yet is dropped.
                    if not pending.done.done():
                        batch.append(pending)
                if batch:
                    await self._send(batch)
        finally:
            self._sending = False

    async def _send(self, batch: list[Pending]) -> None:
        request = pb.CompleteTasksRequest(
            completions=[pb.CompleteTaskRequest(lease_id=p.lease_id, output=p.output) for p in batch]
        )
        try:
            response: pb.CompleteTasksResponse = await self._stub.CompleteTasks(
                request, timeout=REPORT_TIMEOUT, metadata=self._metadata
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - each completion's policy decides
            if status_code(err) == grpc.StatusCode.UNIMPLEMENTED:
                self._fall_back(batch)
                return
            for pending in batch:
                self._settle(pending, err, "CompleteTasks")
            return
        self._health.ok()
        results = list(response.results)
        for i, pending in enumerate(batch):
            self._settle(
                pending, result_error(results[i] if i < len(results) else None, pending.lease_id), "CompleteTasks"
            )

    def _settle(self, pending: Pending, err: BaseException | None, rpc: str) -> None:
        """Ends a delivery attempt made with ``rpc`` (``err`` None: recorded): done, or delivered again
        with CompleteTasks after its backoff."""
        pending.attempts += 1
        if pending.done.done():
            return
        if err is None or not should_retry_report(rpc, err, pending.attempts, pending.policy):
            pending.finish()
            return
        self._spawn(self._retry_later(pending, pending.backoff.next()))

    async def _retry_later(self, pending: Pending, delay: float) -> None:
        await asyncio.sleep(delay)
        if pending.done.done():
            return
        if pending.policy.abandoned():
            pending.finish()
            return
        self._enqueue(pending)

    def _fall_back(self, batch: list[Pending]) -> None:
        self._batched = False
        self._logger.info("the daemon does not implement CompleteTasks (an older weftd); completing tasks one by one")
        rest = list(self._queued)
        self._queued.clear()
        for pending in [*batch, *rest]:
            self._complete_one(pending)

    def _complete_one(self, pending: Pending) -> None:
        if pending.done.done():
            return
        request = pb.CompleteTaskRequest(lease_id=pending.lease_id, output=pending.output)

        async def deliver() -> None:
            await report("CompleteTask", self._stub.CompleteTask, request, self._metadata, pending.policy)
            pending.finish()

        task = self._spawn(deliver())
        # The task was abandoned (its caller cancelled): stop delivering.
        pending.done.add_done_callback(lambda done: task.cancel() if done.cancelled() else None)
