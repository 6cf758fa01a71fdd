"""Structured logs: one JSON object per line, with the extra fields a call attaches.

Request logs (logger ``recsvc.requests``, one line per answer) may be sampled with
RECSVC_LOG_SAMPLE (a fraction, default 1 = every answer); warnings and errors never are.
"""

from __future__ import annotations

import logging
import random
import sys
from datetime import UTC, datetime

import orjson

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
REQUESTS = "recsvc.requests"


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            "pid": record.process,  # which worker process of `recsvc serve`
        }
        entry.update({k: v for k, v in vars(record).items() if k not in _STANDARD})
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        # orjson: a third of json.dumps' cost on the request path; str() for what it can't.
        return orjson.dumps(entry, default=str).decode()


class Sample(logging.Filter):
    """Keeps a ``rate`` share of INFO records and every warning or error."""

    def __init__(self, rate: float) -> None:
        super().__init__()
        self.rate = rate

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno > logging.INFO or self.rate >= 1.0 or random.random() < self.rate


def configure_json(level: int = logging.INFO, request_sample: float = 1.0) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    requests = logging.getLogger(REQUESTS)
    requests.filters[:] = [Sample(request_sample)] if request_sample < 1.0 else []
    # faiss logs each CPU-specific build it tries (eight lines per worker at start): keep its
    # warnings only, unless the whole log is at debug level.
    logging.getLogger("faiss.loader").setLevel(logging.WARNING if level > logging.DEBUG else level)
