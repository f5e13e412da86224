"""Tracks whether the daemon answers, for one warn line per outage instead of one per attempt."""

from __future__ import annotations

import logging
import time

from .rpc import error_fields, is_transient


class DaemonHealth:
    """Shared by every loop of a worker: logs when an outage starts and when it ends."""

    def __init__(self, logger: logging.LoggerAdapter[logging.Logger]) -> None:
        self._logger = logger
        self._down_since: float | None = None
        self._last_problem: str | None = None

    def ok(self) -> None:
        """Records a successful call."""
        if self._down_since is not None:
            down_ms = round((time.monotonic() - self._down_since) * 1000)
            self._logger.info("daemon reachable again", extra={"downForMs": down_ms})
        self._down_since = None
        self._last_problem = None

    def failed(self, rpc: str, err: BaseException) -> None:
        """Records a failed call of ``rpc``; the caller backs off."""
        fields = {"rpc": rpc, **error_fields(err)}
        if is_transient(err):
            if self._down_since is None:
                self._down_since = time.monotonic()
                self._logger.warning("daemon unavailable; retrying with backoff", extra=fields)
            else:
                self._logger.debug("daemon still unavailable", extra=fields)
            return
        # A non-transient error (a bad queue name, a rejected token) repeats on every attempt: log
        # it when it first appears or changes.
        problem = f"{rpc} {fields['code']} {fields['error']}"
        if problem != self._last_problem:
            self._last_problem = problem
            self._logger.error(f"{rpc} failed; retrying with backoff", extra=fields)
        else:
            self._logger.debug(f"{rpc} failed again", extra=fields)
