"""Where a RecommendProducts call spends its server CPU, measured in this process without
gRPC: request parsing, the servicer (filter translation, engine, response building), the
engine alone and its FAISS search, the JSON request log line, response serialization."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn, cast

import grpc
import numpy as np

from bench.harness import Catalog
from recsvc.convert import context_from_pb as to_context
from recsvc.convert import filter_from_pb as to_filter
from recsvc.logs import JsonFormatter
from recsvc.model_store import ModelStore
from recsvc.servicer import RecommenderServicer
from recsvc.v1 import recommender_pb2 as pb


class _TimedIndex:
    """Wraps a FAISS index; accumulates the time spent in ``search``."""

    def __init__(self, index: Any) -> None:
        self.index = index
        self.seconds = 0.0
        self.calls = 0

    def search(self, q: np.ndarray, k: int) -> Any:
        start = time.perf_counter()
        try:
            return self.index.search(q, k)
        finally:
            self.seconds += time.perf_counter() - start
            self.calls += 1


class _Context:
    """Just enough of grpc.ServicerContext for the servicer's success path."""

    def time_remaining(self) -> float | None:
        return None

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise RuntimeError(f"{code.name}: {details}")


@dataclass(frozen=True)
class Breakdown:
    catalog: str
    calls: int
    load_s: float
    parse_ms: float
    servicer_ms: float  # servicer without request logging: translation + engine + response
    engine_ms: float
    engine_p50_ms: float
    engine_p99_ms: float
    search_ms: float  # FAISS search inside the engine (per call, including 0 for direct scoring)
    search_share: float  # calls that searched the index (the others scored a category exactly)
    log_ms: float  # one JSON request log line, written to a file (part of servicer_ms in serve)
    serialize_ms: float


def _mean_ms(fn: Callable[[], object], n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def breakdown(catalog: Catalog, requests: list[bytes], log_file: Path, n: int = 2000) -> Breakdown:
    import faiss

    faiss.omp_set_num_threads(1)  # as recsvc.server.start does
    start = time.perf_counter()
    store = ModelStore(catalog.model_dir)
    store.reload()
    load_s = time.perf_counter() - start
    engine = store.engine
    timed = _TimedIndex(engine.index)
    engine.index = timed
    servicer = RecommenderServicer(store)
    context = cast(grpc.ServicerContext, _Context())
    raw = [requests[i % len(requests)] for i in range(n)]
    parsed = [pb.RecommendProductsRequest.FromString(r) for r in raw]
    warm = min(200, n)
    for r in parsed[:warm]:
        servicer.RecommendProducts(r, context)

    parse_ms = _mean_ms(lambda: [pb.RecommendProductsRequest.FromString(r) for r in raw], 1) / n
    # The engine alone, per call (for percentiles), with its FAISS share.
    timed.seconds, timed.calls = 0.0, 0
    engine_ns = np.empty(n, dtype=np.int64)
    for i, r in enumerate(parsed):
        args = (r.customer_id, r.limit, to_filter(r.filter), to_context(r.context))
        t0 = time.perf_counter_ns()
        engine.recommend(*args)
        engine_ns[i] = time.perf_counter_ns() - t0
    search_ms = timed.seconds / n * 1e3
    search_share = timed.calls / n

    requests_log = logging.getLogger("recsvc.requests")
    saved = (requests_log.level, requests_log.handlers[:], requests_log.propagate)
    responses: list[pb.RecommendProductsResponse] = []
    try:
        requests_log.setLevel(logging.WARNING)  # the servicer without its request log line
        start = time.perf_counter()
        for r in parsed:
            responses.append(servicer.RecommendProducts(r, context))
        servicer_ms = (time.perf_counter() - start) / n * 1e3
        # `recsvc serve` logs one JSON line per answer (configure_json, level INFO): the same
        # record as the servicer's, through the same formatter, to a file.
        with log_file.open("w") as stream:
            handler = logging.StreamHandler(stream)
            handler.setFormatter(JsonFormatter())
            requests_log.handlers[:] = [handler]
            requests_log.propagate = False
            requests_log.setLevel(logging.INFO)
            extras = [
                {
                    "rpc": "RecommendProducts",
                    "recommendation_id": reply.recommendation_id,
                    "model_version": reply.model_version,
                    "personalized": reply.personalized,
                    "items": len(reply.items),
                    "customer_id": request.customer_id,
                }
                for request, reply in zip(parsed, responses, strict=True)
            ]
            start = time.perf_counter()
            for extra in extras:
                requests_log.info("RecommendProducts", extra=extra)
            log_ms = (time.perf_counter() - start) / n * 1e3
    finally:
        requests_log.setLevel(saved[0])
        requests_log.handlers[:] = saved[1]
        requests_log.propagate = saved[2]
        log_file.unlink(missing_ok=True)
    serialize_ms = _mean_ms(lambda: [r.SerializeToString() for r in responses], 1) / n
    result = Breakdown(
        catalog=catalog.label,
        calls=n,
        load_s=load_s,
        parse_ms=parse_ms,
        servicer_ms=servicer_ms,
        engine_ms=float(engine_ns.mean()) / 1e6,
        engine_p50_ms=float(np.percentile(engine_ns, 50)) / 1e6,
        engine_p99_ms=float(np.percentile(engine_ns, 99)) / 1e6,
        search_ms=search_ms,
        search_share=search_share,
        log_ms=log_ms,
        serialize_ms=serialize_ms,
    )
    store.close()
    return result  # the engine goes with this frame: free before the servers start
