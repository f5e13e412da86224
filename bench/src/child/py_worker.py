"""The Python worker of `pnpm bench` (scenario "worker runtimes"): one queue, a no-op handler named
"noop", the given concurrency, and a Work stream unless --no-stream. Runs until SIGTERM or SIGINT."""

import argparse
import logging

from weft_worker import Worker

parser = argparse.ArgumentParser()
parser.add_argument("--address", required=True)
parser.add_argument("--queue", required=True)
parser.add_argument("--concurrency", type=int, default=64)
parser.add_argument("--no-stream", action="store_true")
args = parser.parse_args()
logging.disable(logging.CRITICAL)
Worker(
    args.address,
    args.queue,
    {"noop": lambda _input, _ctx: None},
    concurrency=args.concurrency,
    stream=not args.no_stream,
).run()
