"""The Python runtime against a real weftd and Redis."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from weft_worker import CancelReason, NonRetryableError, TaskContext, Worker
from weft_worker.gen.weft.v1 import run_pb2

from .conftest import Client, Weftd, free_port, from_value, running, start_weftd, status, task_of, wait_for


def test_plain_and_async_handlers_get_their_context_and_return_outputs(weftd: Weftd, client: Client, queue: str) -> None:
    def first(input: Any, ctx: TaskContext) -> Any:
        return {
            "thread": threading.current_thread().name.startswith("weft-handler"),
            "input": input,
            "runInput": ctx.run_input,
            "attempt": ctx.attempt,
        }

    async def second(input: Any, ctx: TaskContext) -> Any:
        await asyncio.sleep(0)
        return {
            "parents": dict(ctx.parent_outputs),
            "workflowVersion": ctx.workflow_version,
            "queue": ctx.queue,
            "handler": ctx.handler,
            "maxAttempts": ctx.max_attempts,
            "worker": ctx.worker_id,
        }

    worker = Worker(weftd.address, queue, {"first": first, "second": second}, worker_id="py-ctx", concurrency=2)
    with running(worker):
        run_id = client.run_workflow(
            queue,
            [{"id": "a", "handler": "first", "input": [1, "x"]}, {"id": "b", "handler": "second", "depends_on": ["a"]}],
            run_input={"n": 1},
        )
        run = client.wait_finished(run_id)
    assert status(run) == "SUCCEEDED"
    a = {"thread": True, "input": [1, "x"], "runInput": {"n": 1}, "attempt": 1}
    assert from_value(task_of(run, "a").output) == a
    assert from_value(run.output) == {
        "b": {"parents": {"a": a}, "workflowVersion": 1, "queue": queue, "handler": "second", "maxAttempts": 3, "worker": "py-ctx"}
    }
    assert {t.worker_id for t in run.tasks} == {"py-ctx"}


def test_failures_retry_stop_at_non_retryable_errors_and_name_their_type(
    weftd: Weftd, client: Client, queue: str
) -> None:
    class QuotaError(Exception):
        type = "Quota"

    def fail(input: Any, ctx: TaskContext) -> Any:
        raise ValueError(f"bad value on attempt {ctx.attempt}")

    def refuse(input: Any, ctx: TaskContext) -> Any:
        raise NonRetryableError("never", type="Refused")

    def quota(input: Any, ctx: TaskContext) -> Any:
        raise QuotaError("over quota")

    def unserialisable(input: Any, ctx: TaskContext) -> Any:
        return object()

    handlers = {"fail": fail, "refuse": refuse, "quota": quota, "unserialisable": unserialisable}
    with running(Worker(weftd.address, queue, handlers, concurrency=4)):
        runs = {
            name: client.run_workflow(queue, [{"id": "t", "handler": name, "max_attempts": 2}]) for name in handlers
        }
        finished = {name: client.wait_finished(run_id) for name, run_id in runs.items()}
    outcome = {
        name: (status(run), task_of(run, "t").attempt, task_of(run, "t").error.type, task_of(run, "t").error.message)
        for name, run in finished.items()
    }
    assert outcome["fail"] == ("FAILED", 2, "ValueError", "bad value on attempt 2")
    assert outcome["refuse"] == ("FAILED", 1, "Refused", "never")
    assert outcome["quota"] == ("FAILED", 2, "Quota", "over quota")
    assert outcome["unserialisable"][:3] == ("FAILED", 1, "OutputNotSerializable")
    assert "ValueError: bad value on attempt 2" in finished["fail"].tasks[0].error.details
    assert client.events(runs["refuse"]) == [
        "RUN_STARTED", "TASK_QUEUED t#0", "TASK_STARTED t#1", "TASK_FAILED t#1", "RUN_FINISHED FAILED",
    ]


def test_heartbeat_reports_progress_while_the_task_runs(weftd: Weftd, client: Client, queue: str) -> None:
    release = threading.Event()

    def slow(input: Any, ctx: TaskContext) -> Any:
        ctx.heartbeat({"done": 50})
        release.wait(15)
        return "ok"

    with running(Worker(weftd.address, queue, {"slow": slow})):
        run_id = client.run_workflow(queue, [{"id": "t", "handler": "slow"}])
        progress = wait_for(
            lambda: from_value(task_of(client.get_run(run_id), "t").progress), "the progress to reach the daemon"
        )
        release.set()
        run = client.wait_finished(run_id)
    assert progress == {"done": 50}
    assert status(run) == "SUCCEEDED"


def test_cancelling_the_run_sets_the_flag_for_thread_and_async_handlers(
    weftd: Weftd, client: Client, queue: str
) -> None:
    seen: dict[str, Any] = {}
    started = threading.Barrier(3)

    def in_thread(input: Any, ctx: TaskContext) -> Any:
        started.wait(10)
        seen["thread"] = (ctx.cancel_event.wait(15), ctx.cancel_reason, ctx.cancelled)
        return "ignored"

    async def in_loop(input: Any, ctx: TaskContext) -> Any:
        await asyncio.get_running_loop().run_in_executor(None, started.wait, 10)
        seen["async"] = await asyncio.wait_for(ctx.wait_cancelled(), 15)
        raise RuntimeError("stopped")

    with running(Worker(weftd.address, queue, {"in_thread": in_thread, "in_loop": in_loop}, concurrency=2)):
        run_id = client.run_workflow(
            queue,
            [{"id": "a", "handler": "in_thread", "heartbeat": 0.6}, {"id": "b", "handler": "in_loop", "heartbeat": 0.6}],
        )
        started.wait(15)
        client.cancel(run_id)
        wait_for(lambda: len(seen) == 2, "both handlers to see the cancellation")
        run = client.wait_finished(run_id)
    assert seen == {"thread": (True, CancelReason.RUN_CANCELLED, True), "async": CancelReason.RUN_CANCELLED}
    assert status(run) == "CANCELLED"
    assert "TASK_COMPLETED a#1" not in client.events(run_id)


def test_stop_lets_in_flight_tasks_finish_and_polls_no_more(weftd: Weftd, client: Client, queue: str) -> None:
    started = threading.Event()
    release = threading.Event()

    def slow(input: Any, ctx: TaskContext) -> Any:
        started.set()
        release.wait(15)
        return "finished"

    closing = threading.Event()

    class OnClosing(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if record.getMessage() == "worker closing":
                closing.set()

    logger = logging.getLogger(f"weft_worker.test.{queue}")
    logger.addHandler(OnClosing())
    logger.setLevel(logging.INFO)
    worker = Worker(weftd.address, queue, {"slow": slow}, concurrency=2, shutdown_grace=15, logger=logger)
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    first = client.run_workflow(queue, [{"id": "t", "handler": "slow"}])
    assert started.wait(15)
    worker.stop()
    assert closing.wait(15)
    later = client.run_workflow(queue, [{"id": "t", "handler": "slow"}])
    release.set()
    thread.join(20)
    assert not thread.is_alive()
    assert status(client.wait_finished(first)) == "SUCCEEDED"
    assert run_pb2.TaskStatus.Name(task_of(client.get_run(later), "t").status) == "TASK_STATUS_QUEUED"


def test_a_task_still_running_after_the_grace_period_is_abandoned(weftd: Weftd, client: Client, queue: str) -> None:
    reasons: list[str | None] = []
    started = threading.Event()

    def stubborn(input: Any, ctx: TaskContext) -> Any:
        started.set()
        ctx.cancel_event.wait(15)
        reasons.append(ctx.cancel_reason)
        return "too late"

    worker = Worker(weftd.address, queue, {"stubborn": stubborn}, shutdown_grace=0.3)
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False})
    thread.start()
    run_id = client.run_workflow(queue, [{"id": "t", "handler": "stubborn"}])
    assert started.wait(15)
    worker.stop()
    thread.join(10)
    assert not thread.is_alive()
    wait_for(lambda: reasons, "the handler to see the shutdown")
    assert reasons == [CancelReason.WORKER_SHUTDOWN]
    # The result of an abandoned task is not reported: its lease expires on the daemon.
    assert status(client.get_run(run_id)) == "RUNNING"


def test_reconnects_after_the_daemon_restarts(redis_url: str, queue: str) -> None:
    port = free_port()
    daemon = start_weftd(redis_url, port=port)
    worker = Worker(daemon.address, queue, {"echo": lambda i, c: i}, retry_max_delay=0.5)
    try:
        with running(worker):
            client = Client(daemon.address)
            assert status(client.wait_finished(client.run_workflow(queue, [{"id": "t", "handler": "echo", "input": 1}]))) == "SUCCEEDED"
            daemon.kill()
            daemon = start_weftd(redis_url, port=port, prefix=daemon.prefix)
            run = client.wait_finished(client.run_workflow(queue, [{"id": "t", "handler": "echo", "input": 2}]))
            assert (status(run), from_value(run.output)) == ("SUCCEEDED", {"t": 2})
            client.channel.close()
    finally:
        daemon.stop()


def test_the_cli_polls_runs_tasks_and_stops_on_sigterm(weftd: Weftd, client: Client, queue: str) -> None:
    handlers = Path(__file__).parent / "cli_handlers.py"
    proc = subprocess.Popen(
        [sys.executable, "-m", "weft_worker", "--address", weftd.address, "--queue", queue, "--handlers", str(handlers)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "WEFT_LOG_LEVEL": "info"},
    )
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stdout or []), daemon=True).start()
    try:
        wait_for(lambda: any('"msg":"worker polling"' in line for line in lines), "the CLI to poll")
        run = client.wait_finished(client.run_workflow(queue, [{"id": "t", "handler": "shout", "input": "hi"}]))
        assert from_value(run.output) == {"t": "HI"}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    wait_for(lambda: any('"msg":"worker closed"' in line for line in lines), "the CLI to log its exit")
    assert sum('"msg":"worker polling"' in line for line in lines) == 1
