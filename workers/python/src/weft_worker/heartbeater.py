"""Keeps one lease alive while its handler runs and relays what the daemon answers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from google.protobuf import struct_pb2

from .gen.weft.v1 import worker_service_pb2 as pb
from .gen.weft.v1.worker_service_pb2_grpc import WorkerServiceStub
from .health import DaemonHealth
from .rpc import is_lease_lost

_FALLBACK_INTERVAL = 10.0
_MINIMUM_INTERVAL = 0.01


def heartbeat_interval(assignment: pb.TaskAssignment, override: float | None) -> float:
    """The automatic heartbeat interval: ``override``, else a third of the heartbeat timeout."""
    if override is not None:
        return override
    window = 0.0
    if assignment.HasField("heartbeat_timeout"):
        window = assignment.heartbeat_timeout.ToTimedelta().total_seconds()
    elif assignment.HasField("lease_deadline"):
        deadline = assignment.lease_deadline.ToDatetime(tzinfo=timezone.utc)
        window = (deadline - datetime.now(timezone.utc)).total_seconds()
    return max(window / 3, _MINIMUM_INTERVAL) if window > 0 else _FALLBACK_INTERVAL


class Heartbeater:
    """Sends a heartbeat every ``interval`` seconds, and on demand, until stopped. Nothing runs
    between heartbeats but a timer: a task that ends before its first heartbeat costs no more."""

    def __init__(
        self,
        *,
        stub: WorkerServiceStub,
        lease_id: str,
        interval: float,
        health: DaemonHealth,
        metadata: tuple[tuple[str, str], ...],
        on_cancel_requested: Callable[[], None],
        on_lease_lost: Callable[[BaseException], None],
    ) -> None:
        self._stub = stub
        self._lease_id = lease_id
        self._interval = interval
        self._health = health
        self._metadata = metadata
        self._on_cancel_requested = on_cancel_requested
        self._on_lease_lost = on_lease_lost
        self._progress: struct_pb2.Value | None = None
        self._stopped = False
        self._timer: asyncio.TimerHandle | None = None
        #: The heartbeat in flight, if any.
        self._sending: asyncio.Task[None] | None = None
        #: A heartbeat was asked for while one was in flight: another goes out when it returns.
        self._again = False

    def start(self) -> None:
        """Starts automatic heartbeats: the first one an interval from now."""
        self._arm()

    def stop(self) -> None:
        """Stops heartbeating; answers to calls in flight are ignored."""
        self._stopped = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sending is not None:
            self._sending.cancel()

    def beat_soon(self, progress: struct_pb2.Value | None) -> None:
        """Keeps ``progress`` for this and later heartbeats and sends one now (on the loop)."""
        if progress is not None:
            self._progress = progress
        self._beat()

    def _arm(self) -> None:
        if self._stopped:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_later(self._interval, self._beat)

    def _beat(self) -> None:
        if self._stopped:
            return
        if self._sending is not None:
            self._again = True
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._sending = asyncio.get_running_loop().create_task(self._send())
        self._sending.add_done_callback(self._sent)

    def _sent(self, _: asyncio.Task[None]) -> None:
        self._sending = None
        if self._stopped:
            return
        if self._again:
            self._again = False
            self._beat()
        else:
            self._arm()

    async def _send(self) -> None:
        request = pb.HeartbeatRequest(lease_id=self._lease_id)
        if self._progress is not None:
            request.progress.CopyFrom(self._progress)
        try:
            response: Any = await self._stub.Heartbeat(
                request, timeout=max(self._interval, 1.0), metadata=self._metadata
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - every outcome is relayed
            if self._stopped:
                return
            if is_lease_lost(err):
                self._on_lease_lost(err)
                return
            # The next automatic heartbeat retries; the lease outlives a couple of missed ones.
            self._health.failed("Heartbeat", err)
            return
        self._health.ok()
        if response.cancel_requested and not self._stopped:
            self._on_cancel_requested()
