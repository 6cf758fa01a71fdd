# mypy: disable-error-code="no-untyped-call"
"""Promotions: the file (validated like the offer catalog), ReloadPromotions, promoted items
in RecommendProducts answers and their served records; TrendingProducts over gRPC."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_helpers import ADMIN, EVENTS, REC, new_id, rpc_error
from redis_fixtures import new_namespace, start_server
from serving_fixtures import add_copy, trained

from feature_store.embedded import EmbeddedRedis
from feature_store.keys import Keys
from formats import bundle as b
from formats.events import SERVED, decode
from recsvc.config import ConfigError
from recsvc.promotions import PromotionsError, load_promotions, parse_promotions
from recsvc.server import Running
from recsvc.v1 import recommender_pb2 as pb

ROOT = Path(__file__).resolve().parent.parent
VERSION = "20260101T000000Z-promoted"


def test_the_example_file_is_valid_and_windows_and_surfaces_select_promotions() -> None:
    catalog = load_promotions(ROOT / "examples" / "promotions.yaml")
    assert [p.promotion_id for p in catalog.promotions] == [
        "coffee-week",
        "partner-brands",
        "winter-sale",
    ]
    before = datetime(2026, 11, 30, tzinfo=UTC)
    during = datetime(2026, 12, 24, tzinfo=UTC)
    assert [r.promotion_id for r in catalog.active(before, "home")] == [
        "coffee-week",
        "partner-brands",
    ]
    assert [r.promotion_id for r in catalog.active(during, "cart")] == [
        "partner-brands",
        "winter-sale",
    ]
    boost = catalog.promotions[1].rule()
    assert boost.share == 0 and boost.boost == 1.5
    assert boost.attributes[0].any_of == ("Velmore", "Truton")
    assert catalog.digest and len(catalog) == 3


BAD = {
    "no version": ({"promotions": []}, "version: missing"),
    "another version": ({"version": 2, "promotions": []}, "version: 2 is not supported"),
    "no list": ({"version": 1}, "promotions: missing"),
    "both levers": (
        [{"promotion_id": "x", "categories": ["a"], "share": 0.1, "boost": 2}],
        "promotions[0] (x): share: give either share",
    ),
    "neither": ([{"promotion_id": "x", "categories": ["a"]}], "(x): share: give either"),
    "too big a share": (
        [{"promotion_id": "x", "categories": ["a"], "share": 0.8}],
        "(x): share: 0.8 is above 0.5",
    ),
    "boost of one": ([{"promotion_id": "x", "products": ["p"], "boost": 1}], "(x): boost: 1"),
    "no filter": ([{"promotion_id": "x", "share": 0.1}], "(x): categories: the promotion selects"),
    "bad window": (
        [
            {
                "promotion_id": "x",
                "categories": ["a"],
                "share": 0.1,
                "valid_from": "2026-02-01",
                "valid_until": "2026-01-01",
            }
        ],
        "(x): valid_until: 2026-01-01 is not after",
    ),
    "bad surface": (
        [{"promotion_id": "x", "categories": ["a"], "share": 0.1, "surfaces": ["moon"]}],
        "(x): surfaces[0]: unknown value 'moon'",
    ),
    "typo": (
        [{"promotion_id": "x", "categorie": ["a"], "share": 0.1}],
        "(x): categorie: unknown field; did you mean 'categories'?",
    ),
    "duplicate": (
        [
            {"promotion_id": "x", "categories": ["a"], "share": 0.1},
            {"promotion_id": "x", "categories": ["b"], "share": 0.1},
        ],
        "promotions[1] (x): promotion_id: duplicate of promotions[0]",
    ),
    "bad range": (
        [{"promotion_id": "x", "attributes": {"size": {"min": 5, "max": 1}}, "share": 0.1}],
        "(x): attributes.size: min 5 is above max 1",
    ),
    "standard column": (
        [{"promotion_id": "x", "attributes": {"price": 3}, "share": 0.1}],
        "(x): attributes.price: price is not an attribute",
    ),
    "empty values": (
        [{"promotion_id": "x", "attributes": {"brand": []}, "share": 0.1}],
        "(x): attributes.brand: expected a non-empty list",
    ),
    "space in id": ([{"promotion_id": "a b", "products": ["p"], "share": 0.1}], "whitespace"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_each_problem_names_file_promotion_and_field(case: str) -> None:
    document, message = BAD[case]
    data = document if isinstance(document, dict) else {"version": 1, "promotions": document}
    with pytest.raises(PromotionsError) as info:
        parse_promotions(data, source="promos.yaml")
    assert message in str(info.value), str(info.value)
    assert all(line.startswith("promos.yaml: ") for line in info.value.errors)


def test_every_problem_of_a_file_is_listed_with_its_line_for_bad_yaml(tmp_path: Path) -> None:
    path = tmp_path / "promos.yaml"
    path.write_text(
        "version: 1\npromotions:\n  - {promotion_id: a, share: 2}\n  - {promotion_id: b}\n"
    )
    with pytest.raises(PromotionsError) as info:
        load_promotions(path)
    assert len(info.value.errors) >= 3  # a's share, a's filter, b's filter and lever
    path.write_text("version: 1\npromotions: [\n")
    with pytest.raises(PromotionsError, match=r"promos.yaml:\d+: invalid YAML"):
        load_promotions(path)
    with pytest.raises(PromotionsError, match="unsupported extension"):
        load_promotions(tmp_path / "promos.txt")


# -- served --------------------------------------------------------------------------------------


def promotions_file(path: Path, category: str, share: float = 0.2) -> Path:
    path.write_text(
        "version: 1\npromotions:\n"
        f"  - {{promotion_id: promo-a, categories: [{category}], share: {share}, "
        "reason: On offer}\n"
    )
    return path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    root = tmp_path_factory.mktemp("promoted")
    models = root / "models"
    add_copy(models, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    counts = b.load_bundle(models / VERSION).products["category"].value_counts()
    category = str(counts.sort("count", descending=True)["category"][3])
    return models, promotions_file(root / "promotions.yaml", category), category


@pytest.fixture(scope="module")
def namespace() -> str:
    return new_namespace()


@pytest.fixture(scope="module")
def server(
    served: tuple[Path, Path, str], embedded_redis: EmbeddedRedis, namespace: str
) -> Iterator[Running]:
    models, promotions, _ = served
    running = start_server(
        models, embedded_redis.url, namespace, promotions=promotions, trending_refresh=0.1
    )
    yield running
    running.stop(grace=0)


def test_answers_carry_promoted_items_and_record_them(
    server: Running, rec_stub: Any, served: tuple[Path, Path, str], namespace: str
) -> None:
    _, _, category = served
    reply = rec_stub.RecommendProducts(
        pb.RecommendProductsRequest(customer_id="C0000001", limit=10), metadata=REC, timeout=10
    )
    promoted = [i for i in reply.items if i.promotion_id]
    assert len(promoted) == 2
    assert all(i.slot == pb.SLOT_KIND_PROMOTION and i.category == category for i in promoted)
    assert all(i.reason == "On offer" for i in promoted)
    assert {i.slot for i in reply.items} - {pb.SLOT_KIND_PROMOTION} == {pb.SLOT_KIND_PERSONALIZED}
    assert server.realtime.store is not None
    server.realtime.store.flush_served()
    client = server.realtime.store.reader
    records = [decode(f[b"e"]) for _, f in client.xrange(Keys(namespace).stream)]
    mine = [r for r in records if r.recommendation_id == reply.recommendation_id]
    assert {(r.type, r.product_id, r.promotion_id) for r in mine} == {
        (SERVED, i.product_id, "promo-a") for i in promoted
    }
    assert all(r.customer_id == "C0000001" for r in mine)


def test_reload_promotions(
    server: Running, rec_stub: Any, admin_stub: Any, served: tuple[Path, Path, str]
) -> None:
    _, path, category = served
    reload = partial(
        admin_stub.ReloadPromotions, pb.ReloadPromotionsRequest(), metadata=ADMIN, timeout=10
    )
    reply = reload()
    assert (reply.promotions, reply.active) == (1, 1) and len(reply.promotions_version) == 12
    code, _ = rpc_error(
        partial(admin_stub.ReloadPromotions, pb.ReloadPromotionsRequest(), metadata=REC, timeout=10)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED
    good = path.read_text()
    try:
        path.write_text("version: 1\npromotions:\n  - {promotion_id: broken}\n")
        code, details = rpc_error(reload)
        assert code == grpc.StatusCode.FAILED_PRECONDITION
        assert "promotions[0] (broken)" in details
        answer = rec_stub.RecommendProducts(
            pb.RecommendProductsRequest(customer_id="C0000002", limit=10), metadata=REC, timeout=10
        )
        assert sum(1 for i in answer.items if i.promotion_id == "promo-a") == 2  # old ones stay
        promotions_file(path, category, share=0.3)
        assert reload().promotions_version != reply.promotions_version
        answer = rec_stub.RecommendProducts(
            pb.RecommendProductsRequest(customer_id="C0000002", limit=10), metadata=REC, timeout=10
        )
        assert sum(1 for i in answer.items if i.promotion_id == "promo-a") == 3
    finally:
        path.write_text(good)
        reload()


def test_trending_products_over_grpc(server: Running, rec_stub: Any, events_stub: Any) -> None:
    engine = server.store.engine
    hot = engine.catalog.product_ids[7]
    category = engine.catalog.category_of(7)
    views = [
        pb.Event(event_id=new_id(), customer_id=f"T{n}", type=pb.EVENT_TYPE_VIEW, product_id=hot)
        for n in range(5)
    ]
    tracked = events_stub.TrackEvents(
        pb.TrackEventsRequest(events=views), metadata=EVENTS, timeout=10
    )
    assert tracked.accepted == 5
    deadline = time.monotonic() + 30  # counters are flushed each second, re-read each 0.1 s
    while True:
        reply = rec_stub.TrendingProducts(
            pb.TrendingProductsRequest(limit=5), metadata=REC, timeout=10
        )
        if reply.items or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert reply.items[0].product_id == hot and reply.recommendation_id.startswith("tr-")
    assert reply.items[0].slot == pb.SLOT_KIND_TRENDING and 4.9 < reply.items[0].score <= 5.0
    assert reply.items[0].reason == f"trending in {category}"
    in_category = rec_stub.TrendingProducts(
        pb.TrendingProductsRequest(category=category), metadata=REC, timeout=10
    )
    assert [i.product_id for i in in_category.items] == [hot]
    other = rec_stub.TrendingProducts(
        pb.TrendingProductsRequest(category="no-such-category"), metadata=REC, timeout=10
    )
    assert list(other.items) == []
    # An unknown customer's answer starts with it (trending is the fallback's first source).
    fallback = rec_stub.RecommendProducts(
        pb.RecommendProductsRequest(customer_id="C-nobody", limit=3), metadata=REC, timeout=10
    )
    assert fallback.items[0].product_id == hot
    assert fallback.items[0].slot == pb.SLOT_KIND_TRENDING
    code, _ = rpc_error(
        partial(rec_stub.TrendingProducts, pb.TrendingProductsRequest(limit=500), metadata=REC)
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    code, _ = rpc_error(
        partial(rec_stub.TrendingProducts, pb.TrendingProductsRequest(), metadata=EVENTS)
    )
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_trending_without_a_feature_store_is_unavailable(
    tmp_path: Path, served: tuple[Path, Path, str]
) -> None:
    import grpc_helpers

    from recsvc.server import start
    from recsvc.v1 import recommender_pb2_grpc as pb_grpc

    models, _, _ = served
    running = start(grpc_helpers.serve_config(models))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.RecommenderStub(channel)
            code, details = rpc_error(
                partial(stub.TrendingProducts, pb.TrendingProductsRequest(), metadata=REC)
            )
            assert code == grpc.StatusCode.UNAVAILABLE and "not configured" in details
            admin = pb_grpc.AdminStub(channel)
            code, details = rpc_error(
                partial(admin.ReloadPromotions, pb.ReloadPromotionsRequest(), metadata=ADMIN)
            )
            assert code == grpc.StatusCode.UNAVAILABLE and "RECSVC_PROMOTIONS" in details
    finally:
        running.stop(grace=0)


def test_a_bad_promotions_file_stops_the_start(
    tmp_path: Path, served: tuple[Path, Path, str]
) -> None:
    import grpc_helpers

    from recsvc.server import start

    models, _, _ = served
    bad = tmp_path / "promotions.yaml"
    bad.write_text("version: 1\npromotions:\n  - {promotion_id: x, share: 0.1}\n")
    with pytest.raises(ConfigError, match=r"RECSVC_PROMOTIONS: .*promotions\[0\] \(x\)"):
        start(grpc_helpers.serve_config(models, promotions=bad))


def test_the_client_command(server: Running, capsys: pytest.CaptureFixture[str]) -> None:
    from recsvc.cli import main

    target = ["client", "--target", f"127.0.0.1:{server.port}"]
    admin = [*target, "--token", "admin-token"]
    rec = [*target, "--token", "rec-token"]
    created = [
        *("update-product", "--product", "CLI1", "--title", "Cli thing", "--category", "clis"),
        *("--attribute", "colour=teal", "--price", "2.5"),
    ]
    assert main([*admin, *created]) == 0
    assert "updated 1 product(s)" in capsys.readouterr().out
    assert main([*rec, "recommend", "--customer", "C0000001", "--attribute", "colour=teal"]) == 0
    out = capsys.readouterr().out
    assert "CLI1" in out and "clis" in out
    assert main([*rec, "recommend", "--customer", "C0000001", "--surface", "home"]) == 0
    assert "promotion promo-a" in capsys.readouterr().out
    assert main([*rec, "trending", "--limit", "3"]) == 0
    assert "recommendation tr-" in capsys.readouterr().out
    assert main([*admin, "reload-promotions"]) == 0
    assert "1 promotions, 1 active now" in capsys.readouterr().out
    assert main([*rec, "recommend", "--customer", "C1", "--attribute", "nothing"]) == 2
    assert "expected NAME=VALUE" in capsys.readouterr().err


def test_recsvc_report_counts_promotions_end_to_end(
    server: Running, rec_stub: Any, events_stub: Any, tmp_path: Path
) -> None:
    from feature_store.export import export_events
    from training.report import campaign_report, read_events

    reply = rec_stub.RecommendProducts(
        pb.RecommendProductsRequest(customer_id="C0000003", limit=10), metadata=REC, timeout=10
    )
    promoted = [i.product_id for i in reply.items if i.promotion_id == "promo-a"]
    shown = [
        pb.Event(
            event_id=new_id(),
            customer_id="C0000003",
            type=kind,
            product_id=product,
            recommendation_id=reply.recommendation_id,
        )
        for product, kind in (
            (promoted[0], pb.EVENT_TYPE_REC_IMPRESSION),
            (promoted[1], pb.EVENT_TYPE_REC_IMPRESSION),
            (promoted[0], pb.EVENT_TYPE_REC_CLICK),
        )
    ]
    events_stub.TrackEvents(pb.TrackEventsRequest(events=shown), metadata=EVENTS, timeout=10)
    store = server.realtime.store
    assert store is not None
    store.flush_served()
    export_events(store, tmp_path / "events", progress=False)
    events = read_events(tmp_path / "events")
    mine = events.filter(events["recommendation_id"] == reply.recommendation_id)
    report = campaign_report(mine)
    (row,) = report.promotions.to_dicts()
    assert row["promotion_id"] == "promo-a"
    assert (row["served"], row["impressions"], row["clicks"]) == (2, 2, 1)
