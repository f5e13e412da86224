"""Fixtures: a real redis-server and a real weftd (from this repository's source), each on a free
loopback port, and a WorkflowService client."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest
from google.protobuf import duration_pb2, json_format, struct_pb2

from weft_worker import Worker
from weft_worker.gen.weft.v1 import run_pb2, workflow_pb2, workflow_service_pb2 as ws
from weft_worker.gen.weft.v1.workflow_service_pb2_grpc import WorkflowServiceStub

REPO_ROOT = Path(__file__).resolve().parents[3]
T = TypeVar("T")


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 15.0) -> T:
    """Polls ``check`` until it returns something truthy; fails naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while True:
        try:
            value = check()
            if value:
                return value
        except Exception as err:  # noqa: BLE001 - reported on timeout
            last = err
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last})" if last else ""))
        time.sleep(0.02)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed (Debian package redis-server)")
    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def accepts() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(accepts, f"redis-server on port {port}")
        yield f"redis://127.0.0.1:{port}"
    finally:
        proc.kill()
        proc.wait()


@dataclass
class Weftd:
    """A weftd child process, listening."""

    proc: subprocess.Popen[str]
    port: int
    prefix: str
    lines: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait()


def start_weftd(redis_url: str, *, port: int = 0, prefix: str | None = None) -> Weftd:
    """Runs ``node --import tsx/esm daemon/src/main.ts`` like test/support/weftd.ts does."""
    prefix = prefix or f"pytest-{uuid.uuid4()}"
    loader = (REPO_ROOT / "node_modules/tsx/dist/esm/index.mjs").as_uri()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEFT_") and k != "REDIS_URL"}
    proc = subprocess.Popen(
        [
            "node", "--import", loader, str(REPO_ROOT / "daemon/src/main.ts"),
            "--redis-url", redis_url, "--addr", f"127.0.0.1:{port}", "--metrics-addr", "127.0.0.1:0",
            "--prefix", prefix, "--stalled-interval", "300ms", "--insecure",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )
    lines: list[str] = []
    listening: dict[str, Any] = {}

    def drain() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if '"weftd listening"' in line:
                listening.update(json.loads(line))

    threading.Thread(target=drain, daemon=True).start()
    try:
        wait_for(lambda: listening or proc.poll() is not None, "weftd to listen", timeout=60)
    except AssertionError:
        proc.kill()
        raise
    if not listening:
        raise AssertionError("weftd exited at start:\n" + "".join(lines))
    return Weftd(proc, int(listening["port"]), prefix, lines)


@pytest.fixture(scope="session")
def weftd(redis_url: str) -> Iterator[Weftd]:
    daemon = start_weftd(redis_url)
    yield daemon
    daemon.stop()


class Client:
    """The WorkflowService calls the tests make."""

    def __init__(self, address: str) -> None:
        self.channel = grpc.insecure_channel(address)
        self.stub = WorkflowServiceStub(self.channel)

    def run_workflow(self, queue: str, tasks: list[dict[str, Any]], run_input: Any = None) -> str:
        """Submits a workflow of ``tasks`` (dicts of TaskDefinition fields) on ``queue`` and
        triggers it; returns the run id."""
        name = f"wf-{uuid.uuid4().hex[:8]}"
        definitions = []
        for t in tasks:
            d = workflow_pb2.TaskDefinition(id=t["id"], handler=t["handler"], queue=queue, depends_on=t.get("depends_on", []))
            if "input" in t:
                d.input.CopyFrom(to_value(t["input"]))
            if "heartbeat" in t:
                d.timeouts.heartbeat.CopyFrom(duration_pb2.Duration(nanos=int(t["heartbeat"] * 1e9) % 1_000_000_000, seconds=int(t["heartbeat"])))
            if "max_attempts" in t:
                d.retry.max_attempts = t["max_attempts"]
                d.retry.initial_backoff.CopyFrom(duration_pb2.Duration(nanos=100_000_000))
            definitions.append(d)
        self.stub.SubmitWorkflow(ws.SubmitWorkflowRequest(definition=workflow_pb2.WorkflowDefinition(name=name, tasks=definitions)))
        request = ws.TriggerRequest(workflow=name)
        if run_input is not None:
            request.input.CopyFrom(to_value(run_input))
        return str(self.stub.Trigger(request).run.id)

    def get_run(self, run_id: str) -> run_pb2.Run:
        return self.stub.GetRun(ws.GetRunRequest(run_id=run_id)).run

    def wait_finished(self, run_id: str, timeout: float = 20.0) -> run_pb2.Run:
        return wait_for(
            lambda: (r := self.get_run(run_id)).status != run_pb2.RUN_STATUS_RUNNING and r,
            f"run {run_id} to finish",
            timeout,
        )

    def events(self, run_id: str) -> list[str]:
        out = []
        for res in self.stub.WatchRun(ws.WatchRunRequest(run_id=run_id), timeout=20):
            e = res.event
            kind = run_pb2.EventType.Name(e.type).removeprefix("EVENT_TYPE_")
            if kind == "RUN_STARTED":
                out.append(kind)
            elif kind == "RUN_FINISHED":
                out.append(f"{kind} {run_pb2.RunStatus.Name(e.run_status).removeprefix('RUN_STATUS_')}")
            else:
                out.append(f"{kind} {e.task_id}#{e.attempt}")
        return out

    def cancel(self, run_id: str) -> None:
        self.stub.Cancel(ws.CancelRequest(run_id=run_id, reason="pytest"))


def to_value(v: Any) -> struct_pb2.Value:
    out = struct_pb2.Value()
    json_format.ParseDict(v, out)
    return out


def from_value(v: struct_pb2.Value) -> Any:
    return json_format.MessageToDict(v) if v.WhichOneof("kind") else None


@pytest.fixture(scope="session")
def client(weftd: Weftd) -> Iterator[Client]:
    c = Client(weftd.address)
    yield c
    c.channel.close()


@pytest.fixture
def queue() -> str:
    return f"pytest-{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def running(worker: Worker) -> Iterator[Worker]:
    """Runs ``worker`` on a thread; stops it and waits for the thread on exit."""
    thread = threading.Thread(target=worker.run, kwargs={"install_signal_handlers": False}, daemon=True)
    thread.start()
    try:
        yield worker
    finally:
        worker.stop()
        thread.join(20)
        assert not thread.is_alive(), "the worker did not stop"


def status(run: run_pb2.Run) -> str:
    return run_pb2.RunStatus.Name(run.status).removeprefix("RUN_STATUS_")


def task_of(run: run_pb2.Run, task_id: str) -> run_pb2.TaskRun:
    return next(t for t in run.tasks if t.task_id == task_id)


class LogCapture(logging.Handler):
    """Keeps the records of a logger of its own (pass ``capture.logger`` to the worker)."""

    def __init__(self, name: str) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._lock = threading.Lock()
        self.logger = logging.getLogger(f"weft_worker.test.{name}")
        self.logger.setLevel(logging.INFO)
        self.logger.addHandler(self)

    def emit(self, record: logging.LogRecord) -> None:
        with self._lock:
            self.records.append(record)

    def with_message(self, message: str) -> list[logging.LogRecord]:
        with self._lock:
            return [r for r in self.records if r.getMessage() == message]

    def at_least(self, level: int) -> list[str]:
        with self._lock:
            return [f"{r.levelname} {r.getMessage()} {vars(r)}" for r in self.records if r.levelno >= level]
