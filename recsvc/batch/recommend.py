"""`recsvc recommend-batch`: RecommendProducts for many customers at once, to a Parquet file.

The answers are the server's for the same bundle, filter and engine settings: customers the
bundle knows go through ``Vectorised`` (the engine's plan, index search and reasons, done per
block of customers with numpy; the same FAISS search depth per customer), and every customer
it leaves (no vector, candidates short of the limit, a category cap, a category scored
exactly, customers the bundle does not know) goes through ``Engine.recommend`` itself.
Real-time activity (events since training) is not read: the answers are those the server
gives a customer without events.

Chunks of customers are answered by worker processes forked after the model is loaded (they
share its memory). Workers compute with numpy and FAISS only and return arrays; this process
turns them into Parquet row groups, in customer order (polars' thread pool does not survive a
fork, so it never runs in a worker).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from formats.attribution import new_id
from formats.types import Filter, Recommendation
from recsvc.batch.vectorised import Vectorised
from recsvc.engine import Engine

CHUNK = 4096  # customers per unit of work
OUTPUT_SCHEMA = {
    "customer_id": pl.Utf8,
    "rank": pl.Int16,
    "product_id": pl.Utf8,
    "score": pl.Float32,
    "reason": pl.Utf8,
    "category": pl.Utf8,
    "personalized": pl.Boolean,
    "recommendation_id": pl.Utf8,
}

# The job of a batch run, set before the worker processes fork (they inherit it).
_JOB: _Job | None = None


@dataclass(frozen=True)
class _Job:
    engine: Engine
    customers: Sequence[str]
    limit: int
    filter: Filter
    vectorised: Vectorised


@dataclass
class Answers:
    """One chunk's answers as arrays, one entry per row (customer x item), any order."""

    ids: list[str]  # recommendation_id per customer of the chunk
    positions: np.ndarray  # the customer's position in the chunk
    ranks: np.ndarray
    items: np.ndarray  # product indexes
    scores: np.ndarray
    liked: np.ndarray  # product behind "because you liked" (n_items: "picked for you")
    # Rows answered by the engine itself, with their own reasons.
    engine_rows: dict[str, list[object]] = field(default_factory=dict)

    @property
    def customers(self) -> int:
        return len(self.ids)


@dataclass(frozen=True)
class BatchResult:
    customers: int
    rows: int
    personalized: int
    path: Path


def answer_chunk(
    engine: Engine,
    customers: Sequence[str],
    limit: int,
    filter: Filter,
    vectorised: Vectorised | None = None,
) -> Answers:
    """Answers for ``customers`` (numpy and FAISS only: safe in a forked worker)."""
    ids = [new_id("rb") for _ in customers]
    done = np.zeros(len(customers), dtype=bool)
    empty = np.zeros(0, dtype=np.int64)
    answers = Answers(ids, empty, empty, empty, np.zeros(0, np.float32), empty)
    if vectorised is not None and vectorised.applies:
        rows = np.array([engine.customer_index.get(c, -1) for c in customers], dtype=np.int64)
        known = np.flatnonzero(rows >= 0)
        block = vectorised.block(rows[known])
        answered = known[block.ok]
        done[answered] = True
        answers.positions = np.repeat(answered, limit)
        answers.ranks = np.tile(np.arange(1, limit + 1, dtype=np.int16), len(answered))
        answers.items = block.items[block.ok].ravel()
        answers.scores = block.scores[block.ok].ravel()
        answers.liked = block.liked[block.ok].ravel()
    columns: dict[str, list[object]] = {
        name: [] for name in ("position", "rank", "product_id", "score", "reason", "category")
    }
    columns["personalized"] = []
    unknown: Recommendation | None = None  # every customer the bundle lacks gets one list
    for position in np.flatnonzero(~done).tolist():
        customer = customers[position]
        if customer in engine.customer_index:
            rec = engine.recommend(customer, limit, filter)
        else:
            unknown = unknown or engine.recommend(customer, limit, filter)
            rec = unknown
        for rank, item in enumerate(rec.items, 1):
            columns["position"].append(position)
            columns["rank"].append(rank)
            columns["product_id"].append(item.product_id)
            columns["score"].append(item.score)
            columns["reason"].append(item.reason)
            columns["category"].append(item.category)
            columns["personalized"].append(rec.personalized)
    answers.engine_rows = columns
    return answers


class Text:
    """The text columns of vectorised rows, by product index (built once per run)."""

    def __init__(self, engine: Engine) -> None:
        cat = engine.catalog
        self.category = cat.category
        self.product_ids = pl.Series(cat.product_ids, dtype=pl.Utf8)
        self.categories = pl.Series(cat.category_names, dtype=pl.Utf8)
        titles = zip(cat.titles, cat.product_ids, strict=True)
        liked = [f"because you liked {t or p}" for t, p in titles]
        self.reasons = pl.Series([*liked, "picked for you"], dtype=pl.Utf8)


def to_frame(answers: Answers, customers: Sequence[str], text: Text) -> pl.DataFrame:
    """The chunk's rows (OUTPUT_SCHEMA), customers in their order, best item first."""
    chunk = pl.Series("customer_id", list(customers), dtype=pl.Utf8)
    ids = pl.Series(answers.ids, dtype=pl.Utf8)
    schema = {**OUTPUT_SCHEMA, "position": pl.Int64}
    fast = pl.DataFrame(
        {
            "customer_id": chunk.gather(answers.positions),
            "rank": answers.ranks,
            "product_id": text.product_ids.gather(answers.items),
            "score": answers.scores,
            "reason": text.reasons.gather(answers.liked),
            "category": text.categories.gather(text.category[answers.items]),
            "personalized": np.ones(len(answers.items), dtype=bool),
            "recommendation_id": ids.gather(answers.positions),
            "position": answers.positions,
        },
        schema=schema,
    )
    rows = answers.engine_rows
    positions = np.asarray(rows.get("position", []), dtype=np.int64)
    slow = pl.DataFrame(
        {
            **{name: rows.get(name, []) for name in OUTPUT_SCHEMA if name in rows},
            "customer_id": chunk.gather(positions),
            "recommendation_id": ids.gather(positions),
            "position": positions,
        },
        schema=schema,
    )
    frame = pl.concat([fast, slow.select(fast.columns)])
    return frame.sort("position", "rank", maintain_order=True).drop("position")


def recommend_chunk(
    engine: Engine,
    customers: Sequence[str],
    limit: int,
    filter: Filter,
    vectorised: Vectorised | None = None,
) -> pl.DataFrame:
    """``answer_chunk`` and ``to_frame`` in this process (tests, small jobs)."""
    return to_frame(
        answer_chunk(engine, customers, limit, filter, vectorised), customers, Text(engine)
    )


def _run_chunk(n: int) -> Answers:
    job = _JOB
    assert job is not None, "a batch chunk ran outside a batch job"
    customers = job.customers[n * CHUNK : (n + 1) * CHUNK]
    return answer_chunk(job.engine, customers, job.limit, job.filter, job.vectorised)


def recommend_batch(
    engine: Engine,
    customers: Sequence[str],
    limit: int,
    filter: Filter,
    out: Path,
    workers: int = 0,
    progress: Callable[[int], None] | None = None,
) -> BatchResult:
    """Recommendations for every customer of ``customers`` (in that order) to ``out``
    (Parquet, written atomically). ``progress`` is told how many customers each chunk did."""
    global _JOB
    workers = workers or os.cpu_count() or 1
    if customers:  # a bad limit or filter fails here, with the engine's message
        limit = engine.plan(customers[0], limit, filter).limit
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    text = Text(engine)
    chunks = (len(customers) + CHUNK - 1) // CHUNK
    rows = personalized = 0
    writer: pq.ParquetWriter | None = None
    try:
        _JOB = _Job(engine, customers, limit, filter, Vectorised(engine, limit, filter))
        for n, answers in enumerate(_answers(range(chunks), workers)):
            frame = to_frame(answers, customers[n * CHUNK : (n + 1) * CHUNK], text)
            table = frame.to_arrow()
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
            rows += frame.height
            personalized += int(frame.filter(pl.col("rank") == 1)["personalized"].sum())
            if progress is not None:
                progress(answers.customers)
        if writer is None:
            pl.DataFrame(schema=OUTPUT_SCHEMA).write_parquet(tmp)
        else:
            writer.close()
            writer = None
        os.replace(tmp, out)
    finally:
        _JOB = None
        if writer is not None:
            writer.close()
        tmp.unlink(missing_ok=True)
    return BatchResult(len(customers), rows, personalized, out)


def _answers(numbers: range, workers: int) -> Iterator[Answers]:
    """Each chunk's answers in chunk order: here (one worker) or from forked processes."""
    import faiss

    if workers <= 1 or len(numbers) <= 1:
        yield from (_run_chunk(n) for n in numbers)
        return
    # One FAISS thread per process: the processes are the parallelism (and an OpenMP team
    # does not survive a fork).
    faiss.omp_set_num_threads(1)
    context = multiprocessing.get_context("fork")
    # An executor, not a Pool: a worker that dies (out of memory) fails the run instead of
    # leaving it waiting forever.
    with ProcessPoolExecutor(min(workers, len(numbers)), mp_context=context) as pool:
        yield from pool.map(_run_chunk, numbers)
