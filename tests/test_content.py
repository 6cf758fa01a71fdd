"""The content model: attribute kinds, featurizing, fitting, storing in a bundle, and the
training pipeline giving products without interactions their vectors."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy.sparse import csr_matrix

from formats import bundle as b
from formats.attributes import attribute_columns, infer_column, parse_number
from formats.content import ContentModel, featurize
from training import synth
from training.cold_start import (
    ColdStartConfig,
    category_precision,
    random_ndcg,
    ranking_ndcg,
)
from training.config import TrainConfig
from training.content import ContentConfig, build_spec, fit_content, with_content_vectors
from training.train import run

QUIET = TrainConfig(progress=False, baselines=("popularity",), clv_check=False)


def test_attribute_kinds_are_inferred_from_values() -> None:
    frame = pl.DataFrame(
        {
            "product_id": ["a", "b", "c", "d"] * 5,
            "year": ["1995", "2001", "unknown", "1990"] * 5,
            "size": ["1", "2", "3", "4"] * 5,
            "genres": ["A", "B", "C", "A B", "A C", "B C", "A B C", "C"] * 2 + ["B"] * 4,
            "tags": ["red|cotton", "blue|wool", "red|wool", "blue|cotton"] * 5,
            "brand": ["Green Valley", "Blue Hills", "Green Hills", "Red Rock"] * 5,
            "notes": [" ".join(f"w{i}{j}" for j in range(12)) for i in range(20)],
            "weight": [1.5, 2.0, None, 3.0] * 5,
        }
    )
    kinds = {c.name: (c.kind, c.separator) for c in attribute_columns(frame)}
    assert kinds["size"][0] == "numeric" and kinds["weight"][0] == "numeric"
    assert kinds["year"][0] == "categorical"  # a quarter of non-numbers is not a number column
    assert kinds["genres"] == ("multi", " ")
    assert kinds["tags"] == ("multi", "|")
    assert kinds["brand"][0] == "categorical"  # as many words as values: not a set of items
    assert kinds["notes"][0] == "text"
    assert "product_id" not in kinds
    mostly = pl.Series("year", ["1995"] * 40 + ["unkonwn"])  # MovieLens has two of these
    assert infer_column(mostly).kind == "numeric"
    assert np.isnan(parse_number("unkonwn")) and parse_number(" 7 ") == 7.0


def _catalog(n: int = 400, seed: int = 0) -> tuple[pl.DataFrame, np.ndarray]:
    """Products whose vectors are a function of category, a multi-valued attribute and a
    numeric one (plus noise): what a content model should recover."""
    rng = np.random.default_rng(seed)
    cats = rng.integers(0, 4, n)
    tag_names = ["red", "blue", "green", "wool", "silk"]
    tags = [sorted(set(rng.choice(tag_names, size=2).tolist())) for _ in range(n)]
    size = rng.normal(10, 3, n)
    base = rng.standard_normal((4, 8))
    tag_vec = {t: rng.standard_normal(8) for t in tag_names}
    vectors = np.stack(
        [
            base[c] + sum(tag_vec[t] for t in ts) + 0.2 * (s - 10) * np.ones(8)
            for c, ts, s in zip(cats, tags, size, strict=True)
        ]
    ) + 0.1 * rng.standard_normal((n, 8))
    frame = pl.DataFrame(
        {
            "product_id": [f"p{i}" for i in range(n)],
            "title": [f"Item {' '.join(ts)} number {i}" for i, ts in enumerate(tags)],
            "category": [f"cat{c}" for c in cats],
            "tags": ["|".join(ts) for ts in tags],
            "size": [f"{s:.2f}" for s in size],  # text, as from a CSV
        }
    )
    return frame, vectors.astype(np.float32)


def test_fit_recovers_vectors_of_unseen_products() -> None:
    frame, vectors = _catalog()
    warm = np.arange(frame.height) % 5 != 0  # every fifth product has no interactions
    model, info = fit_content(frame, vectors, warm, ContentConfig())
    assert info["columns"] == {"tags": "multi", "size": "numeric"}
    assert info["fitted_on"] == warm.sum() and info["features"] > 10
    cold = np.flatnonzero(~warm)
    predicted = model.predict(frame[cold.tolist()])
    truth = vectors[cold]
    r2 = 1 - ((truth - predicted) ** 2).sum() / ((truth - truth.mean(0)) ** 2).sum()
    assert r2 > 0.8, r2
    filled = with_content_vectors(frame, vectors, warm, model)
    assert np.array_equal(filled[warm], vectors[warm])
    assert np.allclose(filled[cold], predicted)


def test_a_live_product_gets_the_vector_training_would_give_it() -> None:
    frame, vectors = _catalog()
    warm = np.arange(frame.height) >= 1
    model, _ = fit_content(frame, vectors, warm, ContentConfig())
    row = frame.row(0, named=True)
    one = model.predict_one(
        row["title"], row["category"], {"tags": row["tags"], "size": row["size"]}
    )
    assert np.allclose(one, model.predict(frame[:1])[0], atol=1e-5)
    # Unknown values and attributes are accepted: they add nothing, and nothing fails.
    odd = model.predict_one("", "brand new category", {"tags": "plaid", "size": "huge", "x": "1"})
    missing_size = model.weights[model.spec.index["size?"]]
    assert np.allclose(odd, model.bias + missing_size, atol=1e-5)


def test_the_model_is_stored_in_a_bundle_as_plain_arrays(
    make_contents: b.BundleContents, model_dir: Path
) -> None:
    frame, vectors = _catalog(60)
    warm = np.ones(frame.height, dtype=bool)
    model, _ = fit_content(frame, vectors, warm, ContentConfig())
    contents = replace(make_contents(), extras={"content": model.to_arrays()})  # type: ignore[operator]
    b.write_bundle(model_dir, contents, "v1")
    loaded = b.load_bundle(model_dir / "v1")  # np.load(allow_pickle=False) inside
    again = ContentModel.from_arrays(loaded.extras["content"])
    assert again.spec.vocabulary == model.spec.vocabulary
    assert again.spec.columns == model.spec.columns
    assert np.allclose(again.predict(frame), model.predict(frame))


def test_features_outside_the_vocabulary_are_ignored() -> None:
    frame, _ = _catalog(50)
    spec = build_spec(frame, np.ones(frame.height, dtype=bool), ContentConfig(min_count=2))
    x = featurize(frame, spec)
    assert isinstance(x, csr_matrix) and x.shape == (frame.height, spec.n_features)
    assert "title:number" in spec.vocabulary  # on every product
    assert not any(t.startswith("title:4") for t in spec.vocabulary)  # numbers seen once


def test_ranking_metrics() -> None:
    rng = np.random.default_rng(0)
    relevant = csr_matrix((rng.random((30, 40)) < 0.1).astype(np.float32))
    relevant = relevant[np.diff(relevant.indptr) > 0]
    # The exact expected NDCG of a random order matches the mean over many shuffles.
    dense = np.asarray(relevant.todense())
    simulated = np.mean(
        [
            ranking_ndcg(rng.random((len(dense), 3)), rng.random((40, 3)), relevant, 10)
            for _ in range(300)
        ]
    )
    assert abs(simulated - random_ndcg(relevant, 10)) < 0.02
    # A ranking that knows the answer scores 1.
    users = dense.astype(np.float64)
    items = np.eye(40)
    assert ranking_ndcg(users, items, relevant, 10) == pytest.approx(1.0)
    # Similar products: vectors that cluster by category find their own category.
    category = np.repeat(np.arange(4), 10)
    vectors = np.eye(4)[category] + 0.01 * rng.standard_normal((40, 4))
    precision, base = category_precision(vectors, category, np.arange(0, 40, 7), 5)
    assert precision == 1.0 and base == pytest.approx(9 / 39)


@pytest.fixture(scope="module")
def world_with_new_products(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("content-world")
    files = synth.write_world(synth.generate(synth.SynthConfig(customers=1500, products=150)), out)
    catalog = pl.read_parquet(files["catalog"])
    new = catalog.head(12).with_columns(
        pl.format("NEW{}", pl.col("product_id")).alias("product_id")
    )
    pl.concat([catalog, new]).write_parquet(files["catalog"])
    return files


def test_training_gives_products_without_interactions_content_vectors(
    world_with_new_products: dict[str, Path], tmp_path: Path
) -> None:
    files = world_with_new_products
    lines: list[str] = []
    cfg = replace(QUIET, cold_start=ColdStartConfig(fraction=0.1))
    result = run(files["interactions"], tmp_path, cfg, catalog=files["catalog"], echo=lines.append)
    content = result.manifest["content"]
    assert content["products_with_content_vectors"] >= 12
    assert content["columns"] == {"brand": "categorical", "consumable": "categorical"}
    bundle = b.load_bundle(result.path)
    ids = bundle.products["product_id"].to_list()
    new = [ids.index(p) for p in ids if p.startswith("NEW")]
    norms = np.linalg.norm(bundle.item_factors[new], axis=1)
    assert np.all(norms > 1e-3)  # no zero vectors: they can be recommended and ranked
    # The first_seen times of the catalog extra: none for the new products.
    first = bundle.extras["catalog"]["first_seen_ms"]
    assert np.all(first[new] == 0) and np.all(first[: new[0]][first[: new[0]] > 0] > 1e12)
    assert set(bundle.extras["content"]) >= {"vocabulary", "weights", "bias", "columns"}
    cold = content["cold_start_evaluation"]
    assert cold["hidden_products"] == round(
        0.1 * (len(ids) - content["products_with_content_vectors"])
    )
    assert set(cold["ranking"]) == {"content", "category_mean", "random"}
    assert 0 < cold["ranking"]["random"] < 1 and 0 <= cold["similar_products"]["base_rate"] < 1
    assert any(line.startswith("cold start (") for line in lines)
    assert any("got their vectors from it" in line for line in lines)


def test_cold_start_evaluation_can_be_skipped(
    world_with_new_products: dict[str, Path], tmp_path: Path
) -> None:
    files = world_with_new_products
    cfg = replace(QUIET, cold_start=ColdStartConfig(fraction=0.0))
    result = run(
        files["interactions"], tmp_path, cfg, catalog=files["catalog"], echo=lambda _: None
    )
    assert result.manifest["content"]["cold_start_evaluation"] is None
    assert "cold start" in result.manifest["timings_s"]


def test_the_cold_start_fit_can_use_a_sample_of_customers(
    world_with_new_products: dict[str, Path],
) -> None:
    from formats.weights import WeightConfig
    from training.cold_start import evaluate_cold_start
    from training.dataset import build_dataset
    from training.ingest import read_catalog, read_interactions
    from training.models import ALSParams

    files = world_with_new_products
    ds, _ = build_dataset(
        read_interactions(files["interactions"])[0], read_catalog(files["catalog"])[0]
    )
    cfg = ColdStartConfig(fraction=0.2, max_fit_customers=500, max_customers=100)
    report = evaluate_cold_start(ds, WeightConfig(), ALSParams(factors=16), ContentConfig(), cfg)
    assert report is not None
    assert report["fit_customers"] == 500 < ds.n_users
    assert 0 < report["customers"] <= 100  # scored customers come from the sample
    assert report["ranking"]["content"] > report["ranking"]["random"]  # the content helps
