"""``python -m weft_worker --address A --queue Q --handlers module_or_path``: runs a worker."""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc

from .execution import Handler
from .logs import configure_json_logging
from .worker import Worker


_EPILOG = """Logs are JSON lines on stdout (level from WEFT_LOG_LEVEL, default info); "worker polling" is
logged when polling starts. SIGTERM or SIGINT stops gracefully; a second one abandons in-flight tasks."""


def parse_args(argv: Sequence[str], env: dict[str, str]) -> argparse.Namespace:
    """Parses the command line; exits with status 2 and a message on a bad argument."""
    parser = argparse.ArgumentParser(prog="python -m weft_worker", description="Run a Weft worker.", epilog=_EPILOG)
    parser.add_argument("--address", default=env.get("WEFT_ADDRESS"), help="daemon address host:port (env WEFT_ADDRESS)")
    parser.add_argument("--queue", required=True, help="task queue to poll")
    parser.add_argument(
        "--handlers",
        required=True,
        help="module name or .py path: a `handlers` dict, else the module's public functions",
    )
    parser.add_argument("--concurrency", type=int, default=10, help="most tasks run at once (default 10)")
    parser.add_argument("--worker-id", help="identity shown on task runs (default <hostname>:<pid>)")
    parser.add_argument("--poll-wait-ms", type=float, default=20_000, help="long-poll wait (default 20000)")
    parser.add_argument("--heartbeat-interval-ms", type=float, help="heartbeat interval (default: heartbeat timeout / 3)")
    parser.add_argument("--shutdown-grace-ms", type=float, default=30_000, help="grace period on SIGTERM (default 30000)")
    parser.add_argument("--token", default=env.get("WEFT_TOKEN"), help="bearer token (env WEFT_TOKEN)")
    parser.add_argument("--ca", help="PEM CA that signed the daemon's certificate: connect with TLS")
    parser.add_argument("--cert", help="PEM client certificate, for mTLS (with --key)")
    parser.add_argument("--key", help="PEM client private key, for mTLS (with --cert)")
    parser.add_argument(
        "--no-stream",
        action="store_true",
        help="poll with PollTask and complete with CompleteTasks instead of one Work stream "
        "(for a proxy that does not carry bidirectional streams)",
    )
    args = parser.parse_args(argv)
    if not args.address:
        parser.error("--address is required")
    if (args.cert is None) != (args.key is None):
        parser.error("--cert and --key go together")
    return args


def tls_credentials(ca: str | None, cert: str | None, key: str | None) -> grpc.ChannelCredentials | None:
    """TLS channel credentials from PEM files; None when no TLS flag was given."""
    if ca is None and cert is None:
        return None

    def read(path: str | None) -> bytes | None:
        return None if path is None else Path(path).read_bytes()

    return grpc.ssl_channel_credentials(root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert))


def load_handlers(spec: str) -> dict[str, Handler]:
    """Imports ``spec`` (a module name, or a path to a .py file) and finds its handlers: a
    ``handlers`` mapping, else the public functions defined in the module."""
    module = _import(spec)
    declared = getattr(module, "handlers", None)
    if isinstance(declared, dict) and declared and all(callable(v) for v in declared.values()):
        return dict(declared)
    functions: dict[str, Handler] = {
        name: fn
        for name, fn in vars(module).items()
        if not name.startswith("_") and inspect.isfunction(fn) and fn.__module__ == module.__name__
    }
    if not functions:
        raise SystemExit(f"{spec} defines no handlers: define a `handlers` dict or handler functions")
    return functions


def _import(spec: str) -> ModuleType:
    path = Path(spec)
    if spec.endswith(".py") or path.is_file():
        name = f"weft_handlers_{path.stem}"
        loader_spec = importlib.util.spec_from_file_location(name, path.resolve())
        if loader_spec is None or loader_spec.loader is None:
            raise SystemExit(f"cannot import handlers from {spec}")
        module = importlib.util.module_from_spec(loader_spec)
        sys.modules[name] = module
        loader_spec.loader.exec_module(module)
        return module
    return importlib.import_module(spec)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m weft_worker`` and the ``weft-worker`` script."""
    args = parse_args(sys.argv[1:] if argv is None else argv, dict(os.environ))
    configure_json_logging(os.environ.get("WEFT_LOG_LEVEL", "info"))
    options: dict[str, Any] = {
        "concurrency": args.concurrency,
        "worker_id": args.worker_id,
        "token": args.token or None,
        "poll_wait": args.poll_wait_ms / 1000,
        "shutdown_grace": args.shutdown_grace_ms / 1000,
        "stream": not args.no_stream,
    }
    if args.heartbeat_interval_ms is not None:
        options["heartbeat_interval"] = args.heartbeat_interval_ms / 1000
    credentials = tls_credentials(args.ca, args.cert, args.key)
    if credentials is not None:
        options["credentials"] = credentials
    worker = Worker(args.address, args.queue, load_handlers(args.handlers), **options)
    worker.run(install_signal_handlers=True)
    logging.shutdown()
    # Exit at once: threads of tasks abandoned at shutdown may still be running.
    sys.stdout.flush()
    os._exit(0)
