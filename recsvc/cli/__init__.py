"""The `recsvc` command line: one entry point, a subcommand per job.

Each command group is a module with a ``register(subparsers)`` that adds its subcommands and
points each at its handler with ``set_defaults(func=...)``. Handlers import polars, numpy,
grpc, training and feature_store themselves, so `recsvc --help` and `recsvc client` start fast.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from formats.errors import RecsvcError
from recsvc.cli import (
    analytics,
    batch,
    client,
    data,
    events,
    features,
    models,
    report,
    serve,
    train,
)

# Before numpy/implicit load (only the handlers load them): one BLAS thread per process (a
# fold-in solve is 20x slower otherwise).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

__all__ = ["build_parser", "main"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="recsvc",
        description="Recommendation and personalization engine for retail loyalty.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # In this order in `recsvc --help`.
    groups = (data, train, serve, client, features, events, analytics, report, batch, models)
    for group in groups:
        group.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        args.func(args)
    except BrokenPipeError:
        # `recsvc client profile ... | head`: the reader left; not an error of ours. Point
        # stdout at /dev/null so the flush at exit does not fail again (Python's advice).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:
        if not isinstance(exc, RecsvcError) and not _is_redis_error(exc):
            raise  # a bug: keep the traceback
        print(f"recsvc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _is_redis_error(exc: Exception) -> bool:
    """Whether ``exc`` is redis-py's RedisError, without importing redis (~80 ms) for the
    commands that never use it: only a command that loaded redis can have raised one."""
    redis_exceptions = sys.modules.get("redis.exceptions")
    return redis_exceptions is not None and isinstance(exc, redis_exceptions.RedisError)
