"""One Work stream of a worker: credits for free slots out, assignments in; outputs out, answers in."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc

from .completion_batcher import MAX_COMPLETIONS_PER_CALL, CompletionBatcher, Pending, result_error
from .gen.weft.v1 import worker_service_pb2 as pb
from .health import DaemonHealth

#: Most credits the daemon lets a stream hold unused.
MAX_UNUSED_CREDITS = 1000
#: What ``read()`` returns once the daemon has ended the stream (not in grpc's type stubs).
_EOF: object = grpc.aio.EOF  # type: ignore[attr-defined]


class WorkStream:
    """Grants the daemon a credit per free slot and starts each assignment it sends; sends task
    outputs, the outputs and freed slots of one turn of the event loop in one message, and settles
    each output on its answer. An output the stream cannot deliver (it broke or ended first), or
    whose answer asks for a retry, goes to the :class:`CompletionBatcher` (CompleteTasks). Lives on
    the worker's event loop."""

    def __init__(
        self,
        call: grpc.aio.StreamStreamCall[pb.WorkRequest, pb.WorkResponse],
        first: pb.WorkRequest,
        *,
        free_slots: Callable[[], int],
        start: Callable[[pb.TaskAssignment], None],
        stopping: Callable[[], bool],
        completions: CompletionBatcher,
        health: DaemonHealth,
    ) -> None:
        self._call = call
        self._first = first
        self._free_slots = free_slots
        self._start = start
        self._stopping = stopping
        self._completions = completions
        self._health = health
        self._wake = asyncio.Event()
        #: Credits the daemon holds unused.
        self._granted = 0
        self._outbox: list[Pending] = []
        #: Outputs sent and not answered yet, by lease.
        self._sent: dict[str, Pending] = {}
        #: Set once the stream takes no more outputs (half-closed or ended).
        self._draining = False
        self._ended = False

    def offer(self, pending: Pending) -> bool:
        """Queues an output to send; False when the stream takes no more."""
        if self._draining:
            return False
        self._outbox.append(pending)
        self._wake.set()
        return True

    def wake(self) -> None:
        """A slot freed, or the worker is closing: the send loop looks again."""
        self._wake.set()

    async def run(self) -> bool:
        """Runs the stream until it ends; returns whether the daemon sent anything. Raises the
        error that broke it (``grpc.aio.AioRpcError``)."""
        sender = asyncio.get_running_loop().create_task(self._send_loop())
        received = False
        try:
            while True:
                response = await self._call.read()
                if response is _EOF:
                    return received
                assert isinstance(response, pb.WorkResponse)
                if not received:
                    received = True
                    self._health.ok()
                self._receive(response)
        finally:
            self._end()
            await asyncio.gather(sender, return_exceptions=True)

    async def _send_loop(self) -> None:
        request = self._first
        while not self._ended:
            self._wake.clear()
            stopping = self._stopping()
            self._fill(request, stopping)
            if request.queue or request.credits or request.completions:
                try:
                    await self._call.write(request)
                except Exception:  # noqa: BLE001 - the stream broke: the read loop says why
                    return
            if stopping:
                try:
                    await self._call.done_writing()
                except Exception:  # noqa: BLE001 - as above
                    pass
                return
            request = pb.WorkRequest()
            await self._wake.wait()
            # Slots that free and outputs made in the same turn of the event loop go out together.
            await asyncio.sleep(0)

    def _fill(self, request: pb.WorkRequest, stopping: bool) -> None:
        if stopping:
            self._draining = True
        else:
            credits = min(self._free_slots(), MAX_UNUSED_CREDITS) - self._granted
            if credits > 0:
                request.credits = credits
                self._granted += credits
        taken = self._outbox[:MAX_COMPLETIONS_PER_CALL]
        del self._outbox[:MAX_COMPLETIONS_PER_CALL]
        for pending in taken:
            # An abandoned task's output that has not gone out yet is dropped.
            if pending.done.done():
                continue
            request.completions.append(pb.CompleteTaskRequest(lease_id=pending.lease_id, output=pending.output))
            self._sent[pending.lease_id] = pending
        if self._outbox:
            self._wake.set()

    def _receive(self, response: pb.WorkResponse) -> None:
        for assignment in response.assignments:
            self._granted -= 1
            # Assignments that arrive while closing are still run: this worker holds their leases.
            self._start(assignment)
        for result in response.results:
            pending = self._sent.pop(result.lease_id, None)
            if pending is None:
                continue
            err = result_error(result, pending.lease_id)
            if err is None:
                pending.finish()
            else:
                self._completions.take_over(pending, err, "Work")

    def _end(self) -> None:
        """The stream ended: outputs queued or sent and not answered go to the batcher."""
        self._draining = True
        self._ended = True
        self._wake.set()
        left: list[Pending] = [*self._outbox, *self._sent.values()]
        self._outbox.clear()
        self._sent.clear()
        self._granted = 0
        for pending in left:
            self._completions.take_over(pending)
