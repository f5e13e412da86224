"""Weft worker runtime for Python: pull tasks from weftd over gRPC and run them.

>>> from weft_worker import Worker
>>> def resize(input, ctx):
...     return {"width": input["width"] // 2}
>>> Worker("127.0.0.1:7233", "images", {"resize": resize}).run()  # doctest: +SKIP
"""

from .context import TaskContext
from .errors import CancelReason, NonRetryableError
from .execution import Handler
from .worker import Worker

__all__ = ["CancelReason", "Handler", "NonRetryableError", "TaskContext", "Worker"]
