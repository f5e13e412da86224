"""Handlers for the CLI test: module-level public functions."""

from typing import Any

from weft_worker import TaskContext


def shout(input: Any, ctx: TaskContext) -> Any:
    return str(input).upper()


def _private_helper() -> None:
    """Not a handler: private names are skipped."""
