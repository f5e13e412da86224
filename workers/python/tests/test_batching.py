"""Batched polls and completions: against a real weftd and Redis, and against a stand-in for an
older weftd without CompleteTasks."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import duration_pb2

from weft_worker import TaskContext, Worker
from weft_worker.gen.weft.v1 import run_pb2
from weft_worker.gen.weft.v1 import worker_service_pb2 as pb

from .conftest import Client, LogCapture, Weftd, free_port, from_value, running, status, task_of, to_value, wait_for


class Calls(grpc.aio.UnaryUnaryClientInterceptor):
    """Sits on the worker's channel: records each call's request (a copy, as sent), maps each
    assigned lease to its task, can hold the next CompleteTasks call until released, and answers
    the heartbeats of chosen attempts itself so that they never reach the daemon."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._log: list[tuple[str, Any]] = []
        self._held: threading.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        #: lease id -> (task id, attempt), from the PollTask answers.
        self.leases: dict[str, tuple[str, int]] = {}
        #: (task id, attempt) whose heartbeats are answered here, not by the daemon.
        self.swallow_heartbeats: set[tuple[str, int]] = set()

    def requests(self, method: str) -> list[Any]:
        with self._lock:
            return [request for name, request in self._log if name == method]

    def lease_of(self, task_id: str, attempt: int) -> str:
        with self._lock:
            return next(lease for lease, of in self.leases.items() if of == (task_id, attempt))

    def hold_next_complete_tasks(self) -> threading.Event:
        """The next CompleteTasks call waits (before it reaches the daemon) until the returned
        event is set."""
        release = threading.Event()
        self._held = release
        return release

    def settle_worker_loop(self) -> None:
        """Returns once the worker's event loop ran what was scheduled on it before this call."""
        assert self._loop is not None, "the worker made no call yet"
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), self._loop).result(10)

    async def intercept_unary_unary(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        self._loop = asyncio.get_running_loop()
        method = details.method.decode() if isinstance(details.method, bytes) else details.method
        name = method.rsplit("/", 1)[-1]
        copy = type(request)()
        copy.CopyFrom(request)
        with self._lock:
            self._log.append((name, copy))
            swallow = name == "Heartbeat" and self.leases.get(request.lease_id) in self.swallow_heartbeats
        if swallow:
            return pb.HeartbeatResponse()
        if name == "CompleteTasks" and self._held is not None:
            release, self._held = self._held, None
            await self._loop.run_in_executor(None, release.wait, 30)
        call = await continuation(details, request)
        if name != "PollTask":
            return call
        response = await call
        with self._lock:
            for a in _assignments(response):
                self.leases[a.lease_id] = (a.task_id, a.attempt)
        return response


def _assignments(response: pb.PollTaskResponse) -> list[pb.TaskAssignment]:
    first = [response.assignment] if response.HasField("assignment") else []
    return [*first, *response.more_assignments]


def observed_worker(address: str, queue: str, handlers: dict[str, Any], logs: LogCapture, **options: Any) -> tuple[Worker, Calls]:
    worker = Worker(address, queue, handlers, logger=logs.logger, **options)
    calls = Calls()
    worker._interceptors = [calls]
    return worker, calls


def wait_queued(client: Client, run_id: str, count: int) -> None:
    wait_for(
        lambda: sum(t.status == run_pb2.TASK_STATUS_QUEUED for t in client.get_run(run_id).tasks) == count,
        f"{count} tasks to be queued",
    )


def completed_on_attempt(logs: LogCapture, attempt: int) -> int:
    return sum(getattr(r, "attempt", None) == attempt for r in logs.with_message("task completed"))


# With stream=False; the Work stream's counterparts are in test_work_stream.py.
def test_a_burst_is_taken_in_few_polls_and_completed_in_batches_within_the_concurrency(
    weftd: Weftd, client: Client, queue: str
) -> None:
    concurrency, n = 4, 12
    run_id = client.run_workflow(queue, [{"id": f"t{i:02}", "handler": "work", "input": i} for i in range(n)])
    wait_queued(client, run_id, n)
    lock = threading.Lock()
    active = most = 0
    release = threading.Event()

    def work(input: Any, ctx: TaskContext) -> Any:
        nonlocal active, most
        with lock:
            active += 1
            most = max(most, active)
        try:
            release.wait(15)
            return input * 10
        finally:
            with lock:
                active -= 1

    logs = LogCapture(queue)
    worker, calls = observed_worker(weftd.address, queue, {"work": work}, logs, concurrency=concurrency, stream=False)
    with running(worker):
        wait_for(lambda: active == concurrency, f"{concurrency} handlers to run")
        # One PollTask asked for every free slot and brought that many tasks; with every slot busy,
        # no other poll is made.
        assert [p.max_tasks for p in calls.requests("PollTask")] == [concurrency]
        assert len(calls.leases) == concurrency
        held = calls.hold_next_complete_tasks()
        try:
            release.set()
            wait_for(lambda: completed_on_attempt(logs, 1) == n, "every handler to return")
            calls.settle_worker_loop()  # the last output is queued behind the held call
        finally:
            held.set()
        run = client.wait_finished(run_id)

    assert status(run) == "SUCCEEDED"
    assert from_value(run.output) == {f"t{i:02}": i * 10 for i in range(n)}
    assert most == concurrency
    polls = calls.requests("PollTask")
    assert len(calls.leases) == n
    assert len(polls) < n, f"{len(polls)} polls for {n} tasks"
    assert all(1 <= p.max_tasks <= concurrency for p in polls), [p.max_tasks for p in polls]
    # The first output went out at once (and was held); every other one queued behind it and went
    # out together in the next call.
    batches = [[c.lease_id for c in r.completions] for r in calls.requests("CompleteTasks")]
    assert len(batches) == 2, batches
    assert sorted(batches[0] + batches[1]) == sorted(calls.leases)
    assert len(batches[1]) >= n - concurrency
    assert calls.requests("CompleteTask") == []
    assert logs.at_least(logging.WARNING) == []


def test_a_stale_lease_in_a_batch_is_dropped_and_the_other_completions_are_recorded(
    weftd: Weftd, client: Client, queue: str
) -> None:
    ids = ["lead", "ok1", "stale", "ok2"]
    releases = {task_id: threading.Event() for task_id in ids}
    started: set[str] = set()

    def work(input: Any, ctx: TaskContext) -> Any:
        if ctx.task_id == "stale" and ctx.attempt > 1:
            return "second try"
        started.add(ctx.task_id)
        releases[ctx.task_id].wait(15)
        return ctx.task_id

    tasks = [{"id": t, "handler": "work", "max_attempts": 2, **({"heartbeat": 0.6} if t == "stale" else {})} for t in ids]
    run_id = client.run_workflow(queue, tasks)
    wait_queued(client, run_id, len(ids))
    logs = LogCapture(queue)
    worker, calls = observed_worker(weftd.address, queue, {"work": work}, logs, concurrency=len(ids), stream=False)
    # The daemon never hears from the first attempt of "stale": its lease times out while its
    # handler runs, unbeknown to the worker.
    calls.swallow_heartbeats.add(("stale", 1))
    with running(worker):
        wait_for(lambda: started == set(ids), "every handler to run")
        wait_for(
            lambda: task_of(client.get_run(run_id), "stale").status != run_pb2.TASK_STATUS_RUNNING,
            "the daemon to time out the stale lease",
        )
        held = calls.hold_next_complete_tasks()
        try:
            releases["lead"].set()
            wait_for(lambda: len(calls.requests("CompleteTasks")) == 1, "the first CompleteTasks call")
            for task_id in ("ok1", "stale", "ok2"):
                releases[task_id].set()
            wait_for(lambda: completed_on_attempt(logs, 1) == len(ids), "every first attempt to return")
            calls.settle_worker_loop()
        finally:
            held.set()
        run = client.wait_finished(run_id)

    assert status(run) == "SUCCEEDED"
    assert from_value(run.output) == {"lead": "lead", "ok1": "ok1", "stale": "second try", "ok2": "ok2"}
    assert task_of(run, "stale").attempt == 2
    batches = [[c.lease_id for c in r.completions] for r in calls.requests("CompleteTasks")]
    assert batches[0] == [calls.lease_of("lead", 1)]
    stale_batch = {calls.lease_of(t, 1) for t in ("ok1", "stale", "ok2")}
    assert stale_batch <= set(batches[1]), batches
    lost = logs.with_message("lease lost; the result was not recorded")
    assert [(getattr(r, "rpc"), getattr(r, "code"), getattr(r, "taskId"), getattr(r, "attempt")) for r in lost] == [
        ("CompleteTasks", "FAILED_PRECONDITION", "stale", 1)
    ]
    assert logs.at_least(logging.ERROR) == []


class OldWeftd:
    """A WorkerService without CompleteTasks, as an older weftd answers (UNIMPLEMENTED): PollTask
    hands out the assignments given to :meth:`offer`; the first CompleteTask fails UNAVAILABLE."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._waiting: deque[pb.TaskAssignment] = deque()
        self.completed: list[tuple[str, Any]] = []
        self._complete_calls = 0
        self.port = free_port()
        handlers = {
            "PollTask": grpc.unary_unary_rpc_method_handler(
                self._poll, pb.PollTaskRequest.FromString, pb.PollTaskResponse.SerializeToString
            ),
            "CompleteTask": grpc.unary_unary_rpc_method_handler(
                self._complete, pb.CompleteTaskRequest.FromString, pb.CompleteTaskResponse.SerializeToString
            ),
            "Heartbeat": grpc.unary_unary_rpc_method_handler(
                lambda request, context: pb.HeartbeatResponse(),
                pb.HeartbeatRequest.FromString,
                pb.HeartbeatResponse.SerializeToString,
            ),
        }
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("weft.v1.WorkerService", handlers),))
        self.server.add_insecure_port(f"127.0.0.1:{self.port}")
        self.server.start()

    def offer(self, lease_id: str, value: Any) -> None:
        assignment = pb.TaskAssignment(
            lease_id=lease_id, run_id=f"run-{lease_id}", task_id="t", handler="echo", attempt=1, max_attempts=1,
            heartbeat_timeout=duration_pb2.Duration(seconds=30),
        )
        assignment.input.CopyFrom(to_value(value))
        with self._cond:
            self._waiting.append(assignment)
            self._cond.notify_all()

    def _poll(self, request: pb.PollTaskRequest, context: grpc.ServicerContext) -> pb.PollTaskResponse:
        deadline = time.monotonic() + min(request.wait.ToTimedelta().total_seconds(), 1.0)
        with self._cond:
            while not self._waiting:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not context.is_active():
                    return pb.PollTaskResponse()
                self._cond.wait(remaining)
            first = self._waiting.popleft()
            more = [self._waiting.popleft() for _ in range(min(len(self._waiting), max(request.max_tasks, 1) - 1))]
        return pb.PollTaskResponse(assignment=first, more_assignments=more)

    def _complete(self, request: pb.CompleteTaskRequest, context: grpc.ServicerContext) -> pb.CompleteTaskResponse:
        with self._cond:
            self._complete_calls += 1
            if self._complete_calls == 1:
                context.abort(grpc.StatusCode.UNAVAILABLE, "injected UNAVAILABLE")
            self.completed.append((request.lease_id, from_value(request.output)))
        return pb.CompleteTaskResponse()

    def completions(self) -> list[tuple[str, Any]]:
        with self._cond:
            return list(self.completed)


def test_against_a_weftd_without_complete_tasks_each_output_goes_out_with_complete_task(queue: str) -> None:
    old = OldWeftd()
    old.offer("a", "one")
    old.offer("b", "two")
    logs = LogCapture(queue)
    worker, calls = observed_worker(
        f"127.0.0.1:{old.port}", queue, {"echo": lambda value, ctx: value}, logs, concurrency=2, retry_initial_delay=0.01
    )
    try:
        with running(worker):
            wait_for(lambda: len(old.completions()) == 2, "the first two completions")
            old.offer("c", "three")
            wait_for(lambda: len(old.completions()) == 3, "the third completion")
    finally:
        old.server.stop(None)

    assert sorted(old.completions()) == [("a", "one"), ("b", "two"), ("c", "three")]
    assert [p.max_tasks for p in calls.requests("PollTask")][0] == 2
    # One CompleteTasks (UNIMPLEMENTED), then one CompleteTask per task plus the retry of the one
    # that met UNAVAILABLE.
    assert len(calls.requests("CompleteTasks")) == 1
    leases = [r.lease_id for r in calls.requests("CompleteTask")]
    assert len(leases) == 4 and sorted(set(leases)) == ["a", "b", "c"], leases
    fallback = "the daemon does not implement CompleteTasks (an older weftd); completing tasks one by one"
    assert len(logs.with_message(fallback)) == 1
    assert len(logs.with_message("the daemon does not implement Work (an older weftd); polling with PollTask")) == 1
    assert logs.at_least(logging.ERROR) == []
