"""Unit tests of the pieces that need no daemon."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import grpc
import pytest

from weft_worker import NonRetryableError, Worker
from weft_worker.backoff import Backoff
from weft_worker.cli import load_handlers, parse_args
from weft_worker.completion_batcher import MAX_COMPLETIONS_PER_CALL, CompletionBatcher, result_error
from weft_worker.gen.weft.v1 import worker_service_pb2 as pb
from weft_worker.health import DaemonHealth
from weft_worker.heartbeater import Heartbeater
from weft_worker.json_value import from_proto_value, to_proto_value
from weft_worker.logs import FieldsAdapter
from weft_worker.reporter import ReportPolicy
from weft_worker.rpc import is_lease_lost, is_transient
from weft_worker.task_error import task_failure_from
from weft_worker.work_stream import MAX_UNUSED_CREDITS, WorkStream
from weft_worker.worker import MAX_TASKS_PER_POLL, tasks_to_ask_for


def test_json_values_round_trip() -> None:
    value = {"s": "naïve", "n": [1, 2.5, -3], "nested": {"ok": True, "none": None}}
    assert from_proto_value(to_proto_value(value)) == value
    assert from_proto_value(to_proto_value((1, 2))) == [1, 2]
    assert from_proto_value(None) is None


def test_whole_numbers_come_back_as_int_like_json_loads() -> None:
    value = from_proto_value(to_proto_value({"n": 3, "f": 2.5, "big": 2**60, "list": [1, -0.0]}))
    assert value == {"n": 3, "f": 2.5, "big": float(2**60), "list": [1, 0]}
    assert isinstance(value["n"], int) and isinstance(value["f"], float) and isinstance(value["big"], float)


def test_json_values_reject_what_json_cannot_hold() -> None:
    with pytest.raises(TypeError):
        to_proto_value(object())
    with pytest.raises(TypeError):
        to_proto_value(float("nan"))


def test_backoff_doubles_up_to_the_cap_with_jitter() -> None:
    b = Backoff(0.1, 0.5)
    delays = [b.next() for _ in range(6)]
    assert 0.05 <= delays[0] <= 0.1
    assert 0.1 <= delays[1] <= 0.2
    assert all(0.25 <= d <= 0.5 for d in delays[3:])
    b.reset()
    assert b.next() <= 0.1


def test_task_failures_carry_type_message_traceback_and_retryability() -> None:
    try:
        raise ValueError("bad value")
    except ValueError as err:
        failure = task_failure_from(err)
    assert (failure.error.type, failure.error.message, failure.retryable) == ("ValueError", "bad value", None)
    assert "ValueError: bad value" in failure.error.details
    nr = task_failure_from(NonRetryableError("nope", type="Quota"))
    assert (nr.error.type, nr.retryable) == ("Quota", False)

    class Teapot(NonRetryableError):
        pass

    assert task_failure_from(Teapot("short and stout")).error.type == "Teapot"


def test_worker_options_are_validated() -> None:
    def h(_input: object, _ctx: object) -> None:
        return None

    with pytest.raises(ValueError, match="concurrency"):
        Worker("127.0.0.1:1", "q", {"h": h}, concurrency=0)
    with pytest.raises(ValueError, match="queue"):
        Worker("127.0.0.1:1", "", {"h": h})
    with pytest.raises(ValueError, match="handler"):
        Worker("127.0.0.1:1", "q", {})
    with pytest.raises(TypeError, match='"h"'):
        Worker("127.0.0.1:1", "q", {"h": 3})  # type: ignore[dict-item]


def test_cli_loads_public_functions_or_a_handlers_dict(tmp_path: object) -> None:
    from pathlib import Path

    here = Path(__file__).parent
    assert list(load_handlers(str(here / "cli_handlers.py"))) == ["shout"]
    module = Path(str(tmp_path)) / "with_dict.py"
    module.write_text("def a(i, c): return 1\nhandlers = {'renamed': a}\n")
    assert list(load_handlers(str(module))) == ["renamed"]


def test_cli_arguments_mirror_the_typescript_bin() -> None:
    args = parse_args(
        ["--address", "h:1", "--queue", "q", "--handlers", "m", "--concurrency", "3", "--poll-wait-ms", "500"],
        {},
    )
    assert (args.address, args.queue, args.handlers, args.concurrency, args.poll_wait_ms) == ("h:1", "q", "m", 3, 500)
    assert parse_args(["--queue", "q", "--handlers", "m"], {"WEFT_ADDRESS": "env:2"}).address == "env:2"
    assert parse_args(["--address", "h:1", "--queue", "q", "--handlers", "m", "--no-stream"], {}).no_stream is True
    assert args.no_stream is False
    with pytest.raises(SystemExit):
        parse_args(["--queue", "q", "--handlers", "m"], {})


def test_polls_ask_for_the_free_slots_up_to_the_daemon_limit() -> None:
    assert [tasks_to_ask_for(10, busy) for busy in (0, 3, 9, 10, 11)] == [10, 7, 1, 0, 0]
    assert tasks_to_ask_for(1000, 0) == MAX_TASKS_PER_POLL == 256


def test_each_complete_tasks_result_reads_as_the_error_complete_task_would_have_raised() -> None:
    assert result_error(pb.CompleteTaskResult(lease_id="a", code=0), "a") is None
    stale = result_error(pb.CompleteTaskResult(lease_id="a", code=9, message="lease expired"), "a")
    assert stale is not None and (stale.code(), stale.details()) == (grpc.StatusCode.FAILED_PRECONDITION, "lease expired")
    assert is_lease_lost(stale) and not is_transient(stale)
    unavailable = result_error(pb.CompleteTaskResult(lease_id="a", code=14), "a")
    assert unavailable is not None and is_transient(unavailable)
    odd = result_error(pb.CompleteTaskResult(lease_id="a", code=99), "a")
    assert odd is not None and odd.code() == grpc.StatusCode.UNKNOWN
    for missing in (None, pb.CompleteTaskResult(lease_id="b", code=0)):
        err = result_error(missing, "a")
        assert err is not None and err.code() == grpc.StatusCode.INTERNAL


class _StatusError(grpc.RpcError):
    def __init__(self, code: grpc.StatusCode) -> None:
        super().__init__(code.name)
        self._code = code

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"injected {self._code.name}"


class _FakeStub:
    """CompleteTasks and CompleteTask in memory: ``codes`` answers a lease's next completions (then
    OK); ``hold`` makes the next CompleteTasks call wait until set; ``batched=False`` answers
    CompleteTasks UNIMPLEMENTED."""

    def __init__(self, *, batched: bool = True) -> None:
        self.batched = batched
        self.calls: list[tuple[str, list[str]]] = []
        self.codes: dict[str, list[int]] = {}
        self.hold: asyncio.Event | None = None
        self.recorded: list[str] = []

    async def CompleteTasks(self, request: pb.CompleteTasksRequest, **_: Any) -> pb.CompleteTasksResponse:
        self.calls.append(("CompleteTasks", [c.lease_id for c in request.completions]))
        if self.hold is not None:
            hold, self.hold = self.hold, None
            await hold.wait()
        if not self.batched:
            raise _StatusError(grpc.StatusCode.UNIMPLEMENTED)
        results = []
        for c in request.completions:
            codes = self.codes.get(c.lease_id) or [0]
            code = codes.pop(0)
            if code == 0:
                self.recorded.append(c.lease_id)
            results.append(pb.CompleteTaskResult(lease_id=c.lease_id, code=code, message=f"code {code}"))
        return pb.CompleteTasksResponse(results=results)

    async def CompleteTask(self, request: pb.CompleteTaskRequest, **_: Any) -> pb.CompleteTaskResponse:
        self.calls.append(("CompleteTask", [request.lease_id]))
        codes = self.codes.get(request.lease_id) or [0]
        code = codes.pop(0)
        if code:
            raise _StatusError(next(c for c in grpc.StatusCode if c.value[0] == code))
        self.recorded.append(request.lease_id)
        return pb.CompleteTaskResponse()


async def _until(check: Any, what: str) -> None:
    """Lets the event loop run until ``check()`` holds; fails naming ``what`` after 1,000 turns."""
    for _ in range(1000):
        if check():
            return
        await asyncio.sleep(0)
    raise AssertionError(f"gave up waiting for {what}")


def _batcher(stub: _FakeStub) -> tuple[CompletionBatcher, ReportPolicy, list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    base = logging.getLogger(f"weft_worker.test.units.{id(stub)}")
    base.setLevel(logging.DEBUG)
    base.addHandler(Keep())
    logger = FieldsAdapter(base, {})
    health = DaemonHealth(logger)
    policy = ReportPolicy(logger=logger, health=health, attempts=3, initial_delay=0.001, max_delay=0.002, abandoned=lambda: False)
    return CompletionBatcher(stub, (), health, logger), policy, records  # type: ignore[arg-type]


async def _first_call_held(
    stub: _FakeStub, batcher: CompletionBatcher, policy: ReportPolicy
) -> tuple[asyncio.Event, asyncio.Future[None]]:
    """Completes lease "a" and holds its call in flight until the returned event is set."""
    hold = stub.hold = asyncio.Event()
    first = asyncio.ensure_future(batcher.complete("a", to_proto_value(1), policy))
    await _until(lambda: stub.calls, "the first call")
    return hold, first


def test_completions_made_while_a_call_is_in_flight_go_out_together_in_the_next_call() -> None:
    async def scenario() -> _FakeStub:
        stub = _FakeStub()
        batcher, policy, _ = _batcher(stub)
        hold, first = await _first_call_held(stub, batcher, policy)
        rest = [asyncio.ensure_future(batcher.complete(f"x{i}", to_proto_value(i), policy)) for i in range(1500)]
        await _until(lambda: len(batcher._queued) == 1500, "1,500 queued completions")
        assert stub.calls == [("CompleteTasks", ["a"])]
        hold.set()
        await asyncio.wait_for(asyncio.gather(first, *rest), 5)
        return stub

    stub = asyncio.run(scenario())
    assert [(rpc, len(leases)) for rpc, leases in stub.calls] == [
        ("CompleteTasks", 1), ("CompleteTasks", MAX_COMPLETIONS_PER_CALL), ("CompleteTasks", 500)
    ]
    assert stub.recorded == ["a", *(f"x{i}" for i in range(1500))]


def test_each_completion_of_a_batch_is_retried_dropped_or_given_up_on_its_own() -> None:
    async def scenario() -> tuple[_FakeStub, list[logging.LogRecord]]:
        stub = _FakeStub()
        stub.codes = {"stale": [9], "retried": [14], "refused": [3], "exhausted": [14, 14, 14]}
        batcher, policy, records = _batcher(stub)
        leases = ["ok", "stale", "retried", "refused", "exhausted"]
        await asyncio.wait_for(asyncio.gather(*(batcher.complete(lease, to_proto_value(0), policy) for lease in leases)), 5)
        return stub, records

    stub, records = asyncio.run(scenario())
    assert stub.calls[0] == ("CompleteTasks", ["ok", "stale", "retried", "refused", "exhausted"])
    assert all(rpc == "CompleteTasks" for rpc, _ in stub.calls)
    assert sorted(stub.recorded) == ["ok", "retried"]
    assert sum("exhausted" in leases for _, leases in stub.calls) == 3
    by_message = [(r.getMessage(), getattr(r, "code", None)) for r in records if r.levelno >= logging.WARNING]
    assert ("lease lost; the result was not recorded", "FAILED_PRECONDITION") in by_message
    failed = "CompleteTasks failed; the result was not recorded and the lease will expire on the daemon"
    assert [(m, c) for m, c in by_message if m == failed] == [(failed, "INVALID_ARGUMENT"), (failed, "UNAVAILABLE")]


def test_without_complete_tasks_the_batcher_falls_back_to_complete_task_for_good() -> None:
    async def scenario() -> tuple[_FakeStub, list[logging.LogRecord]]:
        stub = _FakeStub(batched=False)
        stub.codes = {"b": [14]}
        batcher, policy, records = _batcher(stub)
        await asyncio.wait_for(asyncio.gather(*(batcher.complete(x, to_proto_value(x), policy) for x in "ab")), 5)
        await asyncio.wait_for(batcher.complete("c", to_proto_value("c"), policy), 5)
        return stub, records

    stub, records = asyncio.run(scenario())
    assert stub.calls == [
        ("CompleteTasks", ["a", "b"]),
        ("CompleteTask", ["a"]),
        ("CompleteTask", ["b"]),
        ("CompleteTask", ["b"]),
        ("CompleteTask", ["c"]),
    ]
    assert stub.recorded == ["a", "b", "c"]
    fallback = "the daemon does not implement CompleteTasks (an older weftd); completing tasks one by one"
    assert [r.getMessage() for r in records].count(fallback) == 1


def test_an_abandoned_completion_that_has_not_gone_out_is_dropped() -> None:
    async def scenario() -> _FakeStub:
        stub = _FakeStub()
        batcher, policy, _ = _batcher(stub)
        hold, first = await _first_call_held(stub, batcher, policy)
        dropped = asyncio.ensure_future(batcher.complete("b", to_proto_value(2), policy))
        kept = asyncio.ensure_future(batcher.complete("c", to_proto_value(3), policy))
        await _until(lambda: len(batcher._queued) == 2, "two queued completions")
        dropped.cancel()
        hold.set()
        await asyncio.wait_for(asyncio.gather(first, kept), 5)
        batcher.close()
        return stub

    stub = asyncio.run(scenario())
    assert stub.calls == [("CompleteTasks", ["a"]), ("CompleteTasks", ["c"])]


class _FakeWorkCall:
    """A Work stream in memory: records what the worker writes; ``answer`` queues what the daemon
    sends; ``end`` ends the stream."""

    def __init__(self) -> None:
        self.written: list[pb.WorkRequest] = []
        self.half_closed = False
        self._responses: asyncio.Queue[Any] = asyncio.Queue()

    async def write(self, request: pb.WorkRequest) -> None:
        copy = pb.WorkRequest()
        copy.CopyFrom(request)
        self.written.append(copy)

    async def done_writing(self) -> None:
        self.half_closed = True

    async def read(self) -> Any:
        return await self._responses.get()

    def answer(self, response: pb.WorkResponse) -> None:
        self._responses.put_nowait(response)

    def end(self) -> None:
        self._responses.put_nowait(grpc.aio.EOF)  # type: ignore[attr-defined]

    def sent_leases(self) -> list[str]:
        return [c.lease_id for r in self.written for c in r.completions]


def test_the_work_stream_grants_free_slots_and_hands_what_it_cannot_settle_to_complete_tasks() -> None:
    async def scenario() -> tuple[_FakeStub, _FakeWorkCall, list[str], list[logging.LogRecord]]:
        stub = _FakeStub()
        batcher, policy, records = _batcher(stub)
        call = _FakeWorkCall()
        started: list[str] = []
        free = [5000]
        stream = WorkStream(
            call,  # type: ignore[arg-type]
            pb.WorkRequest(queue="q", worker_id="w", handlers=["h"]),
            free_slots=lambda: free[0],
            start=lambda a: started.append(a.lease_id),
            stopping=lambda: False,
            completions=batcher,
            health=DaemonHealth(policy.logger),
        )
        batcher.stream = stream
        running = asyncio.ensure_future(stream.run())
        await _until(lambda: call.written, "the first message")
        # The first message names the queue and grants every free slot, up to the daemon's limit.
        first = call.written[0]
        assert (first.queue, first.worker_id, list(first.handlers), first.credits) == ("q", "w", ["h"], MAX_UNUSED_CREDITS)
        call.answer(pb.WorkResponse(assignments=[pb.TaskAssignment(lease_id=f"l{i}") for i in range(3)]))
        await _until(lambda: len(started) == 3, "3 assignments started")
        free[0] = 3
        stream.wake()
        # 997 credits left unused and 3 slots free: no credit to grant, nothing to send.
        await _until(lambda: not stream._wake.is_set(), "the send loop to look")
        assert len(call.written) == 1
        outputs = [asyncio.ensure_future(batcher.complete(lease, to_proto_value(0), policy)) for lease in ("ok", "stale", "retry", "lost")]
        await _until(lambda: len(call.sent_leases()) == 4, "4 outputs on the stream")
        assert stub.calls == []
        call.answer(
            pb.WorkResponse(
                results=[
                    pb.CompleteTaskResult(lease_id="ok", code=0),
                    pb.CompleteTaskResult(lease_id="stale", code=9, message="lease expired"),
                    pb.CompleteTaskResult(lease_id="retry", code=14, message="busy"),
                ]
            )
        )
        await _until(lambda: outputs[0].done() and outputs[1].done(), "the recorded and the stale output to settle")
        # "retry" goes out again with CompleteTasks; "lost" waits for an answer the stream never gives.
        await asyncio.wait_for(outputs[2], 5)
        assert not outputs[3].done()
        call.end()
        assert await asyncio.wait_for(running, 5) is True
        await asyncio.wait_for(outputs[3], 5)
        # Once ended, the stream takes no more outputs: they go out with CompleteTasks.
        await asyncio.wait_for(batcher.complete("after", to_proto_value(0), policy), 5)
        return stub, call, started, records

    stub, call, started, records = asyncio.run(scenario())
    assert started == ["l0", "l1", "l2"]
    assert call.sent_leases() == ["ok", "stale", "retry", "lost"]
    assert [leases for _, leases in stub.calls] == [["retry"], ["lost"], ["after"]]
    assert sorted(stub.recorded) == ["after", "lost", "retry"]
    lost = [r for r in records if r.getMessage() == "lease lost; the result was not recorded"]
    assert [(getattr(r, "rpc", None), getattr(r, "code", None)) for r in lost] == [("Work", "FAILED_PRECONDITION")]


class _HeartbeatStub:
    """Heartbeat in memory: records each call's progress; ``hold`` keeps the next call in flight until set."""

    def __init__(self) -> None:
        self.calls: list[Any] = []
        self.hold: asyncio.Event | None = None

    async def Heartbeat(self, request: pb.HeartbeatRequest, **_: Any) -> pb.HeartbeatResponse:
        self.calls.append(from_proto_value(request.progress) if request.HasField("progress") else None)
        if self.hold is not None:
            hold, self.hold = self.hold, None
            await hold.wait()
        return pb.HeartbeatResponse()


def _heartbeater(stub: _HeartbeatStub, interval: float) -> Heartbeater:
    logger = FieldsAdapter(logging.getLogger("weft_worker.test.units.heartbeat"), {})
    return Heartbeater(
        stub=stub,  # type: ignore[arg-type]
        lease_id="lease",
        interval=interval,
        health=DaemonHealth(logger),
        metadata=(),
        on_cancel_requested=lambda: None,
        on_lease_lost=lambda _: None,
    )


def test_a_task_that_ends_before_its_first_heartbeat_leaves_nothing_running() -> None:
    async def scenario() -> tuple[_HeartbeatStub, int, int]:
        stub = _HeartbeatStub()
        before = len(asyncio.all_tasks())
        heartbeater = _heartbeater(stub, 60.0)
        heartbeater.start()
        during = len(asyncio.all_tasks())
        heartbeater.stop()
        await asyncio.sleep(0)
        return stub, before, during

    stub, before, during = asyncio.run(scenario())
    assert stub.calls == []
    assert during == before  # a timer, no task


def test_heartbeats_come_every_interval_and_at_once_on_demand_one_at_a_time() -> None:
    async def scenario() -> list[Any]:
        stub = _HeartbeatStub()
        heartbeater = _heartbeater(stub, 0.05)
        heartbeater.start()
        await _until_async(lambda: len(stub.calls) == 1, "the first automatic heartbeat")
        # An on-demand heartbeat goes out at once; two more asked for while it is in flight make one.
        hold = stub.hold = asyncio.Event()
        heartbeater.beat_soon(to_proto_value(1))
        await _until(lambda: len(stub.calls) == 2, "the heartbeat asked for")
        heartbeater.beat_soon(to_proto_value(2))
        heartbeater.beat_soon(to_proto_value(3))
        await asyncio.sleep(0.01)
        assert len(stub.calls) == 2
        hold.set()
        await _until(lambda: len(stub.calls) == 3, "the heartbeat asked for while one was in flight")
        # Then automatic ones again, with the last progress.
        await _until_async(lambda: len(stub.calls) == 4, "the next automatic heartbeat")
        heartbeater.stop()
        count = len(stub.calls)
        await asyncio.sleep(0.12)
        assert len(stub.calls) == count
        return stub.calls

    assert asyncio.run(scenario()) == [None, 1, 3, 3]


async def _until_async(check: Any, what: str, timeout: float = 5.0) -> None:
    """Waits (on the loop's clock) until ``check()`` holds; fails naming ``what`` after ``timeout`` s."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        await asyncio.sleep(0.005)
