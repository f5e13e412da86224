"""Unit tests of the pieces that need no daemon."""

from __future__ import annotations

import pytest

from weft_worker import NonRetryableError, Worker
from weft_worker.backoff import Backoff
from weft_worker.cli import load_handlers, parse_args
from weft_worker.json_value import from_proto_value, to_proto_value
from weft_worker.task_error import task_failure_from


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
    with pytest.raises(SystemExit):
        parse_args(["--queue", "q", "--handlers", "m"], {})
