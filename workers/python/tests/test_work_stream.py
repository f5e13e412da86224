"""The Work stream: tasks and outputs on one stream, against a real weftd and Redis; outputs a
broken stream did not deliver go out with CompleteTasks."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import grpc

from weft_worker import TaskContext
from weft_worker.gen.weft.v1 import worker_service_pb2 as pb

from .conftest import Client, LogCapture, Weftd, from_value, running, status, wait_for
from .test_batching import observed_worker, wait_queued


class StreamCalls(grpc.aio.StreamStreamClientInterceptor):
    """Sits on the worker's channel and records its Work streams: each message sent (a copy) and
    received. With ``break_first``, the first message carrying outputs is dropped and its stream
    broken, as a failed connection would (UNAVAILABLE)."""

    def __init__(self, *, break_first: bool = False) -> None:
        self._lock = threading.Lock()
        self.streams = 0
        self.sent: list[pb.WorkRequest] = []
        self.received: list[pb.WorkResponse] = []
        self.withheld: list[str] = []
        self._break_first = break_first
        #: Credits sent minus assignments received, and its peak.
        self._outstanding = 0
        self.most_outstanding = 0

    def snapshot(self) -> tuple[int, list[pb.WorkRequest], list[pb.WorkResponse], list[str]]:
        with self._lock:
            return self.streams, list(self.sent), list(self.received), list(self.withheld)

    async def intercept_stream_stream(
        self, continuation: Callable[..., Any], details: Any, request_iterator: Any
    ) -> Any:
        with self._lock:
            self.streams += 1
        broken = asyncio.Event()
        call: Any = None

        async def requests() -> AsyncIterator[pb.WorkRequest]:
            async for request in request_iterator:
                copy = pb.WorkRequest()
                copy.CopyFrom(request)
                with self._lock:
                    breaking = self._break_first and len(copy.completions) > 0
                    if breaking:
                        self._break_first = False
                        self.withheld = [c.lease_id for c in copy.completions]
                    else:
                        self._outstanding += copy.credits
                        self.most_outstanding = max(self.most_outstanding, self._outstanding)
                        self.sent.append(copy)
                if breaking:
                    broken.set()
                    call.cancel()
                    return
                yield request

        call = await continuation(details, requests())

        async def responses() -> AsyncIterator[pb.WorkResponse]:
            try:
                async for response in call:
                    with self._lock:
                        self._outstanding -= len(response.assignments)
                        self.received.append(response)
                    yield response
            except asyncio.CancelledError:
                if not broken.is_set():
                    raise
            if broken.is_set():
                raise grpc.aio.AioRpcError(
                    grpc.StatusCode.UNAVAILABLE, grpc.aio.Metadata(), grpc.aio.Metadata(), "the test broke the stream"
                )

        return responses()


def test_tasks_and_outputs_travel_on_one_work_stream(weftd: Weftd, client: Client, queue: str) -> None:
    concurrency, n = 4, 30
    run_id = client.run_workflow(queue, [{"id": f"t{i:02}", "handler": "work", "input": i} for i in range(n)])
    wait_queued(client, run_id, n)
    lock = threading.Lock()
    active = most = 0

    async def work(input: Any, ctx: TaskContext) -> Any:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        await asyncio.sleep(0.002)
        with lock:
            active -= 1
        return input * 10

    logs = LogCapture(queue)
    worker, calls = observed_worker(weftd.address, queue, {"work": work}, logs, concurrency=concurrency)
    streams = StreamCalls()
    worker._interceptors = [calls, streams]
    with running(worker):
        run = client.wait_finished(run_id)
        wait_for(
            lambda: sum(len(r.results) for r in streams.snapshot()[2]) == n, "every output to be answered on the stream"
        )

    assert status(run) == "SUCCEEDED"
    assert from_value(run.output) == {f"t{i:02}": i * 10 for i in range(n)}
    opened, sent, received, _ = streams.snapshot()
    assert opened == 1
    assert sent[0].queue == queue and sent[0].worker_id == worker.worker_id and list(sent[0].handlers) == ["work"]
    assert sent[0].credits == concurrency
    assert all(r.queue == "" for r in sent[1:])
    assert sum(len(r.assignments) for r in received) == n
    assert streams.most_outstanding <= concurrency
    assert most <= concurrency
    leases = [c.lease_id for r in sent for c in r.completions]
    assert len(leases) == n and len(set(leases)) == n
    results = {res.lease_id: res.code for r in received for res in r.results}
    assert results == dict.fromkeys(leases, 0)
    # No unary call carried a task or an output.
    assert calls.requests("PollTask") == [] and calls.requests("CompleteTasks") == [] and calls.requests("CompleteTask") == []
    assert logs.at_least(logging.WARNING) == []


def test_outputs_a_broken_stream_did_not_deliver_go_out_with_complete_tasks(
    weftd: Weftd, client: Client, queue: str
) -> None:
    n = 4
    run_id = client.run_workflow(queue, [{"id": f"t{i}", "handler": "work", "input": i} for i in range(n)])
    wait_queued(client, run_id, n)
    release = threading.Event()
    started: set[str] = set()

    def work(input: Any, ctx: TaskContext) -> Any:
        started.add(ctx.task_id)
        release.wait(15)
        return input + 1

    logs = LogCapture(queue)
    worker, calls = observed_worker(weftd.address, queue, {"work": work}, logs, concurrency=n, retry_initial_delay=0.01)
    streams = StreamCalls(break_first=True)
    worker._interceptors = [calls, streams]
    with running(worker):
        # Every task is taken before any output goes out, so that breaking the stream loses no assignment.
        wait_for(lambda: len(started) == n, f"{n} handlers to start")
        release.set()
        run = client.wait_finished(run_id)
        wait_for(lambda: streams.snapshot()[0] >= 2, "the worker to open a second Work stream")

    assert status(run) == "SUCCEEDED"
    assert from_value(run.output) == {f"t{i}": i + 1 for i in range(n)}
    assert all(t.attempt == 1 for t in run.tasks)
    _, sent, _, withheld = streams.snapshot()
    assert withheld, "the test did not break the stream"
    on_streams = [c.lease_id for r in sent for c in r.completions]
    via_calls = [c.lease_id for r in calls.requests("CompleteTasks") for c in r.completions]
    assert set(withheld) <= set(via_calls), (withheld, via_calls)
    assert not set(withheld) & set(on_streams)
    assert len(set(on_streams) | set(via_calls)) == n
    outage = logs.with_message("daemon unavailable; retrying with backoff")
    assert len(outage) == 1 and getattr(outage[0], "rpc", None) == "Work", [vars(r) for r in outage]
