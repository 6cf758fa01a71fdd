"""The item-to-item model and sequence-aware histories at serving time: the engine answers
as `recsvc evaluate` scores the bundle offline, reasons name recent products, fold-in weighs
a history as training would, sessions of visitors without history, and older bundles."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from serving_fixtures import QUIET, trained, world

from feature_store.store import Activity, RecentEvent
from formats import bundle as b
from formats.errors import InvalidRequest
from formats.history import SEQUENCE, History, empty_history
from formats.limits import MAX_SESSION_PRODUCTS
from formats.types import Context, Filter
from formats.weights import WeightConfig
from recsvc.engine import Engine
from recsvc.engine import item2item as served_item2item
from training.bundle_eval import bundle_scorers
from training.dataset import build_dataset, user_item_matrix
from training.ingest import read_interactions
from training.metrics import recommend_batch
from training.train import run


@pytest.fixture(scope="module")
def i2i(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine.load(trained(tmp_path_factory, "item2item"))


@pytest.fixture(scope="module")
def blend(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    return Engine.load(trained(tmp_path_factory, "blend"))


def customers(engine: Engine, n: int = 40) -> list[str]:
    sizes = np.diff(engine.user_items.indptr)
    ids = engine.bundle.customer_ids.to_list()
    return [ids[u] for u in np.flatnonzero(sizes >= 3)[:n].tolist()]


@pytest.mark.parametrize("kind", ["item2item", "blend"])
def test_served_answers_are_what_evaluate_scores_offline(
    kind: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The engine's top 20 of each customer is the offline scorer's top 20 (seen masked)."""
    bundle = b.load_bundle(trained(tmp_path_factory, kind))
    engine = Engine(bundle)
    scorers, served = bundle_scorers(bundle)
    assert served == kind
    seen = bundle.user_items.copy()
    seen.data[:] = 1.0
    users = customers(engine)
    rows = np.array([engine.customer_index[c] for c in users])
    offline = recommend_batch(scorers[served], seen, rows, 20)
    same = 0
    for customer, top in zip(users, offline, strict=True):
        rec = engine.recommend(customer, 20)
        assert rec.personalized
        served_ids = [i.product_id for i in rec.items]
        expected = [engine.catalog.product_ids[i] for i in top]
        if kind == "item2item":
            # Positive scores first, then popularity: the same order exactly.
            assert served_ids == expected, customer
        same += served_ids == expected
    # The blend scores a union of candidates (ALS's best, the neighbours'): nearly always
    # exactly the dense ranking.
    assert same >= 0.9 * len(users)


def test_blend_scores_each_candidate_in_full_however_short_the_head(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ALS pick that the neighbours reached outside their sorted head keeps its neighbour
    score: every served item scores what the offline blend gives it (a head of one x limit
    puts most reached products outside it)."""
    monkeypatch.setattr(served_item2item, "HEAD", 1)
    bundle = b.load_bundle(trained(tmp_path_factory, "blend"))
    blend = Engine(bundle)
    scorers, served = bundle_scorers(bundle)
    assert served == "blend"
    checked = 0
    for customer in customers(blend):
        dense = scorers["blend"](np.array([blend.customer_index[customer]]))[0]
        rec = blend.recommend(customer, 20)
        items = rec.items[: len(rec.items) - rec.filled_from_popularity]
        for item in items:
            j = blend.catalog.product_index[item.product_id]
            assert item.score == pytest.approx(float(dense[j]), rel=1e-4, abs=1e-5), customer
        checked += len(items)
    assert checked >= 20 * len(customers(blend)) // 2


def test_reasons_name_the_history_product_that_gave_the_most(i2i: Engine) -> None:
    customer = customers(i2i)[0]
    row = i2i.customer_index[customer]
    history = i2i.histories.of(row)
    rec = i2i.recommend(customer, 20)
    titles = {i2i.catalog.titles[j] or i2i.catalog.product_ids[j] for j in history.items}
    query = i2i.item2item.query(history) if i2i.item2item else None
    assert query is not None
    for item in rec.items:
        if item.reason.startswith("because you liked "):
            name = item.reason.removeprefix("because you liked ")
            assert name in titles
            j = i2i.catalog.product_index[item.product_id]
            parts = i2i.item2item.neighbours[query.indices][:, [j]].toarray()[:, 0] * query.data  # type: ignore[union-attr]
            top = int(query.indices[int(np.argmax(parts))])
            assert name == (i2i.catalog.titles[top] or i2i.catalog.product_ids[top])
        else:
            assert item.reason.startswith("popular in ")


def test_recent_products_outweigh_older_ones(i2i: Engine) -> None:
    """The same products in the opposite order give another query: the latest weighs most."""
    assert i2i.item2item is not None and i2i.item2item.decay > 0
    a, b_ = 3, 150
    first = empty_history().add([(a, 1.0), (b_, 1.0)])
    second = empty_history().add([(b_, 1.0), (a, 1.0)])
    q1, q2 = i2i.item2item.query(first), i2i.item2item.query(second)
    w1 = dict(zip(q1.indices.tolist(), q1.data.tolist(), strict=True))
    w2 = dict(zip(q2.indices.tolist(), q2.data.tolist(), strict=True))
    assert w1[b_] > w1[a] and w2[a] > w2[b_]
    assert w1[b_] == pytest.approx(w2[a])


def test_als_reasons_prefer_the_recent_of_two_equally_similar_products(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    engine = Engine.load(trained(tmp_path_factory, "exact"))
    cat = engine.catalog
    a, b_ = 10, 20
    cat.grouped_factors[cat.position[b_]] = cat.grouped_factors[cat.position[a]]
    history = empty_history().add([(a, 1.0), (b_, 1.0)])
    chosen = [(30, 1.0, ""), (40, 0.5, "")]
    engine._explain(chosen, history)
    name = cat.titles[b_] or cat.product_ids[b_]
    assert [why for _, _, why in chosen] == [f"because you liked {name}"] * 2
    history = empty_history().add([(b_, 1.0), (a, 1.0)])
    chosen = [(30, 1.0, "")]
    engine._explain(chosen, history)
    assert chosen[0][2] == f"because you liked {cat.titles[a] or cat.product_ids[a]}"


def test_similar_products_come_from_the_neighbour_table(i2i: Engine) -> None:
    assert i2i.item2item is not None and i2i.serving["similar"] == "item2item"
    idx = int(i2i.catalog.popular_order[0])
    pid = i2i.catalog.product_ids[idx]
    rec = i2i.similar(pid, 10)
    table = i2i.item2item.neighbours
    row = dict(zip(table[idx].indices.tolist(), table[idx].data.tolist(), strict=True))
    positive = sorted((j for j, w in row.items() if w > 0), key=lambda j: -row[j])
    got = [i2i.catalog.product_index[i.product_id] for i in rec.items]
    head = got[: min(10, len(positive))]
    assert head == positive[: len(head)]
    assert idx not in got and len(got) == 10


def test_a_session_recommends_for_a_visitor_without_history(i2i: Engine, blend: Engine) -> None:
    for engine in (i2i, blend):
        cat = engine.catalog
        session = tuple(cat.product_ids[i] for i in (5, 6, 7))
        rec = engine.recommend("C-visitor", 10, context=Context(session_product_ids=session))
        assert rec.personalized and len(rec.items) == 10
        assert not {i.product_id for i in rec.items} & set(session)
        assert any(i.reason.startswith("because you liked") for i in rec.items)
        anonymous = engine.recommend("C-visitor", 10)
        assert not anonymous.personalized
        assert [i.product_id for i in rec.items] != [i.product_id for i in anonymous.items]
        # Unknown products in the session are ignored; a known customer's history wins.
        unknown = engine.recommend("C-visitor", 10, context=Context(session_product_ids=("zz",)))
        assert not unknown.personalized
        known = customers(engine)[0]
        with_session = engine.recommend(known, 10, context=Context(session_product_ids=session))
        assert [i.product_id for i in with_session.items] == [
            i.product_id for i in engine.recommend(known, 10).items
        ]


def test_item2vec_serves_similar_products_and_sessions_where_chosen(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    engine = Engine.load(trained(tmp_path_factory, "item2vec"))
    vec = engine.item2vec
    assert vec is not None and engine.item2item is None
    assert engine.serving == {"recommend": "als", "similar": "item2vec", "session": "item2vec"}
    idx = int(engine.catalog.popular_order[3])
    rec = engine.similar(engine.catalog.product_ids[idx], 10)
    cosine = vec.vectors @ vec.vectors[idx] + vec.prior
    cosine[idx] = -np.inf
    expected = [engine.catalog.product_ids[i] for i in np.argsort(-cosine, kind="stable")[:10]]
    assert [i.product_id for i in rec.items] == expected
    session = tuple(engine.catalog.product_ids[i] for i in (5, 6, 7))
    visit = engine.recommend("C-visitor", 10, context=Context(session_product_ids=session))
    assert visit.personalized and len(visit.items) == 10
    assert not {i.product_id for i in visit.items} & set(session)
    names = {engine.catalog.titles[i] or engine.catalog.product_ids[i] for i in (5, 6, 7)}
    assert {i.reason.removeprefix("because you liked ") for i in visit.items} <= names
    # A known customer is still served by ALS.
    known = customers(engine, 1)[0]
    row = engine.customer_index[known]
    scores = engine.item_factors @ engine.user_factors[row]
    top = engine.recommend(known, 1).items[0].product_id
    seen = set(engine._history(row).tolist())
    best = next(i for i in np.argsort(-scores, kind="stable") if i not in seen)
    assert top == engine.catalog.product_ids[best]


def test_an_als_bundle_recommends_from_a_session_by_fold_in(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    engine = Engine.load(trained(tmp_path_factory, "exact"))
    session = tuple(engine.catalog.product_ids[i] for i in (5, 6, 7))
    rec = engine.recommend("C-visitor", 10, context=Context(session_product_ids=session))
    assert rec.personalized and not {i.product_id for i in rec.items} & set(session)


def test_session_ids_are_checked(i2i: Engine) -> None:
    too_many = tuple(f"P{i}" for i in range(MAX_SESSION_PRODUCTS + 1))
    with pytest.raises(InvalidRequest, match="at most"):
        i2i.recommend("C-visitor", 10, context=Context(session_product_ids=too_many))
    with pytest.raises(InvalidRequest, match="session_product_ids"):
        i2i.recommend("C-visitor", 10, context=Context(session_product_ids=("",)))


def test_rank_orders_by_the_served_model(i2i: Engine) -> None:
    customer = customers(i2i)[0]
    rec = i2i.recommend(customer, 10, Filter())
    ids = [i.product_id for i in rec.items if not i.reason.startswith("popular")]
    assert len(ids) >= 3
    ranked = i2i.rank(customer, list(reversed(ids)))
    assert [i.product_id for i in ranked.items] == ids and ranked.personalized


# -- fold-in weighs a history as training does ---------------------------------------------


@pytest.fixture(scope="module")
def decayed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Engine]:
    """A bundle trained with sequence decay, log confidence and customer damping (no product
    damping: a new event would change a product's count, and with it the damping)."""
    files = world(tmp_path_factory)
    weights = WeightConfig(sequence_decay=3.0, user_exponent=0.5, item_exponent=0.0)
    cfg = replace(QUIET, weights=weights, use_item2item=False)
    out = tmp_path_factory.mktemp("decayed")
    result = run(files["interactions"], out, cfg, catalog=files["catalog"], echo=lambda _: None)
    return files["interactions"], Engine.load(result.path)


def test_fold_in_gives_the_trained_confidence_back(decayed: tuple[Path, Engine]) -> None:
    _, engine = decayed
    assert engine.fold_in is not None and engine.weights.sequence_decay == 3.0
    m = engine.user_items
    for user in range(0, 200, 7):
        history = engine.histories.of(user)
        conf = engine.fold_in.confidence(history)
        row = m[user]
        np.testing.assert_allclose(conf, row.data, rtol=1e-5)
        assert (history.items == row.indices).all()


def test_new_events_take_the_latest_positions_as_in_retraining(
    decayed: tuple[Path, Engine], tmp_path: Path
) -> None:
    """Fold-in's confidence of a history plus new events equals the matrix training computes
    from the same interactions with those events appended."""
    interactions, engine = decayed
    assert engine.fold_in is not None
    frame, _ = read_interactions(interactions)
    catalog = engine.bundle.products.drop("popularity")
    customer = customers(engine, 1)[0]
    user = engine.customer_index[customer]
    trained = engine.histories.of(user)
    old, new = int(trained.items[0]), int(engine.catalog.popular_order[-1])
    assert new not in trained.items
    events = [(new, "purchase"), (old, "view"), (new, "view")]
    last = frame["timestamp"].max()
    assert isinstance(last, datetime)
    extra = pl.DataFrame(
        {
            "customer_id": [customer] * 3,
            "product_id": [engine.catalog.product_ids[i] for i, _ in events],
            "timestamp": [last + timedelta(seconds=10 + i) for i in range(3)],
            "event_type": [t for _, t in events],
            "quantity": [1, 1, 1],
        },
        schema_overrides={
            "timestamp": frame["timestamp"].dtype,
            "quantity": frame["quantity"].dtype,
        },
    )
    both = pl.concat([frame.select(extra.columns), extra])
    ds, _ = build_dataset(both, catalog)
    retrained = user_item_matrix(ds, engine.weights)
    u = ds.customer_ids.to_list().index(customer)
    expected = dict(zip(retrained[u].indices.tolist(), retrained[u].data.tolist(), strict=True))
    weights = engine.weights.event_weights
    history = trained.add([(i, weights[t]) for i, t in events])
    got = dict(
        zip(history.items.tolist(), engine.fold_in.confidence(history).tolist(), strict=True)
    )
    assert got.keys() == expected.keys()
    for item, value in expected.items():
        assert got[item] == pytest.approx(value, rel=1e-4), item
    # The new product, bought last, now weighs more than any trained product.
    assert got[new] == max(got.values())


def test_recent_events_move_the_recommendations(decayed: tuple[Path, Engine]) -> None:
    _, engine = decayed
    customer = customers(engine, 1)[0]
    before = engine.recommend(customer, 20)
    now = engine.cutoff_ms + 1000
    cat = engine.catalog
    code = cat.category[int(cat.popular_order[0])]
    others = [int(i) for i in cat.popular_by_category[code][:5].tolist()]
    recent = tuple(
        RecentEvent("purchase", cat.product_ids[i], now + k, 1.0) for k, i in enumerate(others)
    )
    after = engine.recommend(customer, 20, activity=Activity(recent=recent))
    assert [i.product_id for i in before.items] != [i.product_id for i in after.items]


# -- bundles of older recsvc versions ------------------------------------------------------


def test_a_bundle_without_sequence_or_serving_fields_serves_als(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    bundle = b.load_bundle(trained(tmp_path_factory, "item2item"))
    manifest = {k: v for k, v in bundle.manifest.items() if k not in ("serving", "model")}
    manifest["params"] = dict(manifest["params"])
    weights = dict(manifest["params"]["weights"])
    del weights["sequence_decay"]
    manifest["params"]["weights"] = weights
    old = replace(bundle, manifest=manifest, extras={})
    b.write_bundle(tmp_path, old, "old")
    engine = Engine.load(tmp_path / "old")
    assert engine.item2item is None and engine.weights.sequence_decay == 0.0
    assert not engine.histories.exact
    customer = customers(engine, 1)[0]
    rec = engine.recommend(customer, 10)
    assert rec.personalized and len(rec.items) == 10
    recent = (RecentEvent("purchase", engine.catalog.product_ids[0], engine.cutoff_ms + 1, 1.0),)
    assert engine.recommend(customer, 10, activity=Activity(recent=recent)).personalized


def test_a_damaged_sequence_extra_is_refused(
    tmp_path_factory: pytest.TempPathFactory, tmp_path: Path
) -> None:
    bundle = b.load_bundle(trained(tmp_path_factory, "item2item"))
    seq = dict(bundle.extras[SEQUENCE])
    seq["rank"] = seq["rank"][:-1]
    b.write_bundle(tmp_path, replace(bundle, extras={**bundle.extras, SEQUENCE: seq}), "bad")
    with pytest.raises(b.BundleError, match="sequence"):
        Engine.load(tmp_path / "bad")


def test_history_add_keeps_each_product_once_with_its_latest_position() -> None:
    h = empty_history().add([(4, 1.0), (2, 0.5), (4, 0.25)])
    assert isinstance(h, History)
    assert h.items.tolist() == [2, 4] and h.events == 3
    assert h.rank.tolist() == [1, 2] and h.raw.tolist() == [0.5, 1.25]
    assert h.oldest_first().tolist() == [2, 4]
    more = h.add([(2, 1.0)])
    assert more.rank.tolist() == [3, 2] and more.oldest_first().tolist() == [4, 2]
    assert more.new_raw.tolist() == [1.5, 1.25]
