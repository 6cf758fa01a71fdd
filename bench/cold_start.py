"""Products without history, served: MovieLens-100k with 10% of its products hidden from
training, measured through a running `recsvc serve`.

    python -m bench.cold_start [--fraction 0.1] [--seed 0] [-k 20]

1. `recsvc data movielens100k`, then every interaction of a random 10% of the movies that have
   any is removed (the catalog keeps them: they are products nobody has bought yet).
2. `recsvc train` on the rest: the content model (genres, release year, title words) gives the
   hidden movies their vectors.
3. Through gRPC: RankProducts ranks all hidden movies for every customer who rated one of them
   (relevant = rated it): NDCG@k beside the expected NDCG of a random order and the NDCG of
   ranking by the mean vector of each movie's category (from the same bundle, in process).
4. SimilarProducts on each hidden movie: the share of answers in its category (its first
   genre) beside the category's base rate; answers with all-zero scores are counted.

Outputs var/bench/cold_start/results.{md,json}.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import grpc
import numpy as np
import polars as pl

from bench.harness import (
    TOKEN,
    Server,
    machine,
    published,
    recsvc_bin,
    run_timed,
    today,
    write_results,
)
from formats import bundle as b
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc

WORK = Path("var/bench/cold_start")


def prepare(work: Path, fraction: float, seed: int) -> tuple[Path, list[str]]:
    """The trained model directory and the hidden product ids (trained once per settings)."""
    data = work / "ml-100k"
    if not (data / "interactions.csv").exists():
        run_timed([recsvc_bin(), "data", "movielens100k", "--out", str(data)])
    tag = f"hide{fraction:g}-seed{seed}"
    hidden_file = work / f"{tag}.hidden.txt"
    models = work / f"models-{tag}"
    inter = pl.read_csv(data / "interactions.csv", infer_schema=False)
    if not hidden_file.exists():
        products = sorted(inter["product_id"].unique().to_list(), key=int)
        rng = np.random.default_rng(seed)
        n = round(len(products) * fraction)
        hidden_file.write_text("\n".join(sorted(rng.choice(products, n, replace=False))) + "\n")
    hidden = hidden_file.read_text().split()
    if published("ml", models) is None:
        kept = work / f"{tag}.interactions.csv"
        inter.filter(~pl.col("product_id").is_in(hidden)).write_csv(kept)
        print(f"training without {len(hidden)} movies' interactions ...", flush=True)
        args = [
            *("train", "--interactions", str(kept), "--catalog", str(data / "catalog.csv")),
            *("--model-dir", str(models), "--quiet", "--no-clv-check"),
            *("--cold-start-fraction", "0"),  # this benchmark hides its own share
        ]
        timed = run_timed([recsvc_bin(), *args])
        print(f"  {timed.seconds:.0f} s", flush=True)
    return models, hidden


def ndcg(ranked: list[str], relevant: set[str], k: int) -> float:
    gains = [1.0 / np.log2(r + 2) for r, p in enumerate(ranked[:k]) if p in relevant]
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(len(relevant), k)))
    return float(sum(gains) / ideal)


def random_ndcg(n_relevant: int, n: int, k: int) -> float:
    """Expected NDCG@k of a uniformly random order of n products, n_relevant of them relevant."""
    dcg = (n_relevant / n) * sum(1.0 / np.log2(r + 2) for r in range(min(k, n)))
    ideal = sum(1.0 / np.log2(r + 2) for r in range(min(n_relevant, k)))
    return float(dcg / ideal)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--fraction", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-k", type=int, default=20)
    args = parser.parse_args(argv)
    WORK.mkdir(parents=True, exist_ok=True)
    models, hidden = prepare(WORK, args.fraction, args.seed)
    bundle = b.load_bundle(b.resolve(models))
    products = bundle.products
    ids = products["product_id"].to_list()
    category = dict(zip(ids, products["category"].to_list(), strict=True))
    inter = pl.read_csv(WORK / "ml-100k" / "interactions.csv", infer_schema=False)
    rated = (
        inter.filter(pl.col("product_id").is_in(hidden))
        .group_by("customer_id")
        .agg(pl.col("product_id").unique())
    )
    trained = set(bundle.customer_ids.to_list())
    relevant = {c: set(p) for c, p in rated.iter_rows() if c in trained}
    # The category-mean baseline, in process from the same bundle.
    warm = products["popularity"].to_numpy() > 0
    means = {}
    for name in set(category.values()):
        rows = [i for i, p in enumerate(ids) if category[p] == name and warm[i]]
        means[name] = (
            bundle.item_factors[rows].mean(axis=0)
            if rows
            else np.zeros(bundle.item_factors.shape[1])
        )
    hidden_means = np.stack([means[category[p]] for p in hidden])
    customer_row = {c: i for i, c in enumerate(bundle.customer_ids.to_list())}

    catalog = published("ml", models)
    assert catalog is not None
    server = Server(catalog, 1, WORK / "serve.log", env={"RECSVC_REDIS_DIR": str(WORK / "redis")})
    scores: dict[str, list[float]] = {"content": [], "random": [], "category_mean": []}
    same: list[float] = []
    base: list[float] = []
    zero_answers = 0
    slots: dict[str, int] = {}
    try:
        server.wait_ready()
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        with grpc.insecure_channel(server.target) as channel:
            stub = pb_grpc.RecommenderStub(channel)
            for customer, rel in sorted(relevant.items()):
                reply = stub.RankProducts(
                    pb.RankProductsRequest(customer_id=customer, product_ids=hidden),
                    metadata=metadata,
                    timeout=30,
                )
                assert reply.personalized, customer
                scores["content"].append(ndcg([i.product_id for i in reply.items], rel, args.k))
                scores["random"].append(random_ndcg(len(rel), len(hidden), args.k))
                by_mean = hidden_means @ bundle.user_factors[customer_row[customer]]
                order = [hidden[i] for i in np.argsort(-by_mean, kind="stable")]
                scores["category_mean"].append(ndcg(order, rel, args.k))
            n = len(ids)
            sizes = products["category"].value_counts()
            size = dict(zip(sizes["category"].to_list(), sizes["count"].to_list(), strict=True))
            for pid in hidden:
                reply = stub.SimilarProducts(
                    pb.SimilarProductsRequest(product_id=pid, limit=args.k),
                    metadata=metadata,
                    timeout=30,
                )
                got = [category[i.product_id] for i in reply.items]
                same.append(sum(c == category[pid] for c in got) / len(got))
                base.append((size[category[pid]] - 1) / (n - 1))
                zero_answers += all(i.score == 0 for i in reply.items)
                for i in reply.items:
                    name = pb.SlotKind.Name(i.slot)
                    slots[name] = slots.get(name, 0) + 1
    finally:
        server.stop()
    mean = {name: float(np.mean(v)) for name, v in scores.items()}
    precision, base_rate = float(np.mean(same)), float(np.mean(base))
    command = "python -m bench.cold_start " + shlex.join(sys.argv[1:] if argv is None else argv)
    ratio = mean["content"] / mean["random"]
    report = "\n".join(
        [
            f"Command: `{command.strip()}`, {today()}, {machine()}.",
            f"MovieLens-100k, {len(hidden)} of {len(ids):,} movies hidden from training "
            f"(seed {args.seed}), {len(relevant):,} customers who rated one; through gRPC "
            f"(`recsvc serve`, 1 worker).",
            "",
            f"| ranking the hidden movies (RankProducts) | NDCG@{args.k} | vs random |",
            "|---|---|---|",
            f"| content vectors (served) | {mean['content']:.4f} | {ratio:.2f}x |",
            f"| category-mean vector | {mean['category_mean']:.4f} | "
            f"{mean['category_mean'] / mean['random']:.2f}x |",
            f"| random order (expected) | {mean['random']:.4f} | 1.00x |",
            "",
            f"| SimilarProducts on a hidden movie | share in its category (top {args.k}) |",
            "|---|---|",
            f"| served (slots: {', '.join(f'{k} {v}' for k, v in sorted(slots.items()))}) "
            f"| {precision:.3f} ({precision / base_rate:.2f}x the base rate) |",
            f"| base rate (category's share of the catalog) | {base_rate:.3f} |",
            "",
            f"Answers whose scores were all zero: {zero_answers} of {len(hidden)}.",
        ]
    )
    write_results(
        WORK,
        report,
        command.strip(),
        {
            "hidden": len(hidden),
            "customers": len(relevant),
            "k": args.k,
            "ndcg": mean,
            "similar_same_category": precision,
            "similar_base_rate": base_rate,
            "similar_all_zero_answers": zero_answers,
            "similar_slots": slots,
        },
    )


if __name__ == "__main__":
    main()
