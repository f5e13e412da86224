"""How a task's result is delivered: the retry policy shared by CompleteTask(s) and FailTask."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from .backoff import Backoff
from .health import DaemonHealth
from .logs import FieldsAdapter
from .rpc import error_fields, is_lease_lost, is_transient

#: Per-call timeout of CompleteTask, CompleteTasks and FailTask, in seconds.
REPORT_TIMEOUT = 10.0


@dataclass(frozen=True)
class ReportPolicy:
    """How one task's result is delivered."""

    logger: FieldsAdapter
    health: DaemonHealth
    attempts: int
    initial_delay: float
    max_delay: float
    #: True once the task was abandoned at shutdown: no more retries.
    abandoned: Callable[[], bool]


def should_retry_report(rpc: str, err: BaseException, attempt: int, policy: ReportPolicy) -> bool:
    """Decides what follows attempt number ``attempt`` of delivering a result that failed with
    ``err``: True when it is worth repeating after a backoff (the daemon deduplicates by lease, so a
    repeat is harmless); otherwise logs why the result was not recorded (its lease expires)."""
    if is_lease_lost(err):
        policy.logger.warning("lease lost; the result was not recorded", extra={"rpc": rpc, **error_fields(err)})
        return False
    if not is_transient(err) or attempt >= policy.attempts or policy.abandoned():
        policy.logger.error(
            f"{rpc} failed; the result was not recorded and the lease will expire on the daemon",
            extra={"rpc": rpc, "attempts": attempt, **error_fields(err)},
        )
        return False
    policy.health.failed(rpc, err)
    return True


async def report(
    rpc: str,
    call: Callable[..., Awaitable[Any]],
    request: Any,
    metadata: tuple[tuple[str, str], ...],
    policy: ReportPolicy,
) -> None:
    """Delivers a result with one call, retrying while the daemon is unavailable. Never raises
    (except on cancellation): an undeliverable result is logged and its lease expires."""
    backoff = Backoff(policy.initial_delay, policy.max_delay)
    attempt = 1
    while True:
        try:
            await call(request, timeout=REPORT_TIMEOUT, metadata=metadata)
            policy.health.ok()
            return
        except asyncio.CancelledError:
            raise
        except Exception as err:  # noqa: BLE001 - classified by should_retry_report
            if not should_retry_report(rpc, err, attempt, policy):
                return
            await asyncio.sleep(backoff.next())
            attempt += 1
