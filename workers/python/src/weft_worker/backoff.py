"""Exponential backoff with jitter."""

from __future__ import annotations

import random


class Backoff:
    """Each delay doubles up to ``maximum`` and is drawn from its upper half, so that many loops
    failing together do not retry in lockstep."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._attempt = 0

    def next(self) -> float:
        """The delay before the next attempt, in seconds."""
        ceiling = float(min(self._maximum, self._initial * 2**self._attempt))
        self._attempt = min(self._attempt + 1, 30)
        return ceiling / 2 + random.random() * (ceiling / 2)

    def reset(self) -> None:
        """Starts over after a success."""
        self._attempt = 0
