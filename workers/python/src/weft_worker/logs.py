"""Logging: fields carried by adapters, and the JSON lines the CLI writes."""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Mapping, MutableMapping
from datetime import datetime, timezone
from typing import Any

#: The logger every worker uses unless given one.
LOGGER_NAME = "weft_worker"

_STANDARD_ATTRS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}


class FieldsAdapter(logging.LoggerAdapter[logging.Logger]):
    """Adds fixed fields (``queue``, ``workerId``, ``runId``, ...) to every record, merged with the
    call's own ``extra``."""

    def __init__(self, logger: logging.Logger, fields: Mapping[str, Any]) -> None:
        super().__init__(logger, dict(fields))

    def process(self, msg: Any, kwargs: MutableMapping[str, Any]) -> tuple[Any, MutableMapping[str, Any]]:
        kwargs["extra"] = {**(self.extra or {}), **kwargs.get("extra", {})}
        return msg, kwargs

    def child(self, **fields: Any) -> FieldsAdapter:
        """An adapter with these fields added."""
        return FieldsAdapter(self.logger, {**(self.extra or {}), **fields})


class JsonFormatter(logging.Formatter):
    """One JSON object per line: level, time, name, msg, then the record's extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "level": record.levelname.lower(),
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "name": record.name,
            "msg": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, separators=(",", ":"), default=str)


def configure_json_logging(level: str) -> None:
    """Sends the worker's logs to stdout as JSON lines at ``level`` (the CLI's set-up)."""
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
