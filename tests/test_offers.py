"""The offer core without Redis or gRPC: catalog validation, eligibility, ranking, Thompson
sampling."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from feature_store.offer_usage import OfferStats, OfferUsage
from formats.errors import InvalidRequest, NotFound
from recsvc.offers import (
    CustomerState,
    Offer,
    OfferCatalog,
    OfferCatalogError,
    OfferChoice,
    OfferContext,
    OfferPolicy,
    birthday_distance,
    check_targets,
    eligible,
    load_catalog,
    parse_catalog,
    recommend_offers,
)

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "offers.yaml"
NOW = datetime(2026, 6, 15, 12, 0, tzinfo=UTC)
CTX = OfferContext(now=NOW, surface="home", channel="web")
GREEDY = OfferPolicy(sample=False)

WriteCatalog = Callable[..., Path]


def offer_doc(offer_id: Any = "o1", **fields: Any) -> dict[str, Any]:
    """A valid offer document with ``fields`` changed (None removes a field)."""
    doc: dict[str, Any] = {
        "offer_id": offer_id,
        "title": f"offer {offer_id}",
        "kind": "percent_off",
        "value": 10,
        "cost": 1.0,
        "value_to_business": 5.0,
    }
    doc.update(fields)
    return {k: v for k, v in doc.items() if v is not None}


def catalog_of(*offers: dict[str, Any], **top: Any) -> OfferCatalog:
    return parse_catalog({"version": 1, "offers": list(offers), **top})


def one(**fields: Any) -> Offer:
    return catalog_of(offer_doc(**fields)).offers[0]


def member(**fields: Any) -> CustomerState:
    base: dict[str, Any] = {
        "customer_id": "C1",
        "segment": "mid_value",
        "lifecycle_stage": "active",
        "tier": "silver",
        "points": 250,
        "purchases": 4,
        "birthday": date(1990, 3, 10),
    }
    base.update(fields)
    return CustomerState(**base)


@pytest.fixture
def write_catalog(tmp_path: Path) -> WriteCatalog:
    def write(doc: Any, name: str = "offers.yaml") -> Path:
        path = tmp_path / name
        if name.endswith(".json"):
            path.write_text(json.dumps(doc))
        else:
            path.write_text(yaml.safe_dump(doc, sort_keys=False))
        return path

    return write


# -- the catalog ---------------------------------------------------------------------------


def test_example_catalog_loads_and_names_real_categories() -> None:
    from training.synth import SynthConfig, generate

    catalog = load_catalog(EXAMPLE)
    assert catalog.version == 1 and len(catalog) == 8
    assert catalog.tiers == ("bronze", "silver", "gold", "platinum")
    assert len(catalog.digest) == 64
    kinds = {o.kind for o in catalog.offers}
    assert kinds == {"percent_off", "amount_off", "points_multiplier", "free_shipping", "gift"}
    # The categories it targets exist in `make run`'s world (2,000 products -> 40 categories).
    world = generate(SynthConfig(customers=30, products=2000, seed=7, events_per_customer=2))
    categories = set(world.catalog["category"].unique().to_list())
    assert check_targets(catalog, set(), categories) == []
    assert catalog.offer("free-shipping").max_impressions_per_day == 3
    with pytest.raises(NotFound, match="nope"):
        catalog.offer("nope")


def test_yaml_and_json_give_the_same_catalog(write_catalog: WriteCatalog) -> None:
    doc = {
        "version": 1,
        "offers": [
            offer_doc(
                valid_from="2026-01-01",
                valid_until="2026-01-31T12:00:00Z",
                segments=["high_value"],
                channels=["iOS"],
            )
        ],
    }
    from_yaml = load_catalog(write_catalog(doc, "a.yml"))
    from_json = load_catalog(write_catalog(doc, "a.json"))
    assert from_yaml.offers == from_json.offers
    o = from_json.offers[0]
    assert o.valid_from == datetime(2026, 1, 1, tzinfo=UTC)
    assert o.valid_until == datetime(2026, 1, 31, 12, tzinfo=UTC)
    assert o.channels == ("ios",)


def test_yaml_native_dates_and_date_end_is_inclusive(tmp_path: Path) -> None:
    path = tmp_path / "o.yaml"
    path.write_text(
        "version: 1\noffers:\n"
        "  - {offer_id: a, title: A, kind: gift, cost: 1, value_to_business: 2,\n"
        "     valid_from: 2026-01-01, valid_until: 2026-01-01}\n"
        "  - {offer_id: b, title: B, kind: gift, cost: 1, value_to_business: 2,\n"
        "     valid_from: 2026-01-01 08:00:00, valid_until: 2026-01-01T12:00:00+02:00}\n"
    )
    a, b = load_catalog(path).offers
    assert (a.valid_from, a.valid_until) == (
        datetime(2026, 1, 1, tzinfo=UTC),
        datetime(2026, 1, 2, tzinfo=UTC),  # a date ends at the end of its day
    )
    assert b.valid_from == datetime(2026, 1, 1, 8, tzinfo=UTC)  # naive = UTC
    assert b.valid_until == datetime(2026, 1, 1, 10, tzinfo=UTC)  # converted to UTC
    assert a.value == 0 and a.kind == "gift"


# Each case: offer fields to change, the field named in the error, words of the message.
OFFER_ERRORS: list[tuple[dict[str, Any], str, str]] = [
    ({"discount": 5}, "discount", "unknown field"),
    ({"segment": ["high_value"]}, "segment", "did you mean 'segments'"),
    ({"title": 12}, "title", "expected a string, got int"),
    ({"title": None}, "title", "missing"),
    ({"title": "  "}, "title", "is empty"),
    ({"kind": None}, "kind", "missing"),
    ({"kind": "bogof"}, "kind", "unknown kind 'bogof'"),
    ({"value": "10%"}, "value", "expected a number, got str"),
    ({"value": None}, "value", "missing; a percent_off offer needs"),
    ({"value": 120}, "value", "out of range for percent_off"),
    ({"value": 0}, "value", "out of range for percent_off"),
    ({"kind": "amount_off", "value": 0}, "value", "out of range for amount_off"),
    ({"kind": "points_multiplier", "value": 1}, "value", "out of range for points_multiplier"),
    ({"value": -5}, "value", "must not be negative"),
    ({"cost": None}, "cost", "missing"),
    ({"cost": -1}, "cost", "must not be negative"),
    ({"cost": float("nan")}, "cost", "finite"),
    ({"value_to_business": None}, "value_to_business", "missing"),
    ({"value_to_business": -2.5}, "value_to_business", "must not be negative"),
    ({"value_to_business": True}, "value_to_business", "expected a number, got bool"),
    ({"products": "P1"}, "products", "expected a list of strings"),
    ({"categories": ["coffee", 3]}, "categories[1]", "expected a non-empty string"),
    ({"segments": ["vip"]}, "segments[0]", "unknown value 'vip'"),
    ({"lifecycle_stages": ["active", "dormant"]}, "lifecycle_stages[1]", "unknown value"),
    ({"surfaces": ["homepage"]}, "surfaces[0]", "unknown value 'homepage'"),
    ({"channels": [""]}, "channels[0]", "expected a non-empty string"),
    ({"min_points": 2.5}, "min_points", "expected an integer, got float"),
    ({"min_points": -10}, "min_points", "must not be negative"),
    ({"first_purchase_only": "yes"}, "first_purchase_only", "expected true or false"),
    ({"birthday_window_days": -1}, "birthday_window_days", "must not be negative"),
    ({"birthday_window_days": 200}, "birthday_window_days", "whole year"),
    ({"valid_from": "next week"}, "valid_from", "expected an ISO date"),
    ({"valid_until": 20260101}, "valid_until", "expected an ISO date"),
    (
        {"valid_from": "2026-03-01", "valid_until": "2026-02-01"},
        "valid_until",
        "is not after valid_from",
    ),
    (
        {"valid_from": "2026-03-01T10:00:00Z", "valid_until": "2026-03-01T10:00:00Z"},
        "valid_until",
        "is not after valid_from",
    ),
    ({"max_redemptions_per_customer": 0}, "max_redemptions_per_customer", "must be above 0"),
    ({"max_redemptions_per_customer": -1}, "max_redemptions_per_customer", "not be negative"),
    ({"budget": -100}, "budget", "must not be negative"),
    ({"budget": 0}, "budget", "must be above 0"),
    ({"max_impressions_per_day": True}, "max_impressions_per_day", "expected an integer"),
    ({"max_impressions_per_day": -3}, "max_impressions_per_day", "must not be negative"),
    ({"reason": ["x"]}, "reason", "expected a string"),
]


@pytest.mark.parametrize(("fields", "field", "words"), OFFER_ERRORS)
def test_offer_validation_errors_name_file_offer_and_field(
    write_catalog: WriteCatalog, fields: dict[str, Any], field: str, words: str
) -> None:
    path = write_catalog({"version": 1, "offers": [offer_doc("ok"), offer_doc("bad", **fields)]})
    with pytest.raises(OfferCatalogError) as caught:
        load_catalog(path)
    assert len(caught.value.errors) == 1, caught.value.errors
    message = caught.value.errors[0]
    assert message.startswith(f"{path}: offers[1] (bad): {field}: "), message
    assert words in message
    assert isinstance(caught.value, ValueError)


def test_offer_id_errors(write_catalog: WriteCatalog) -> None:
    path = write_catalog(
        {
            "version": 1,
            "offers": [
                offer_doc("dup", cost=-1),
                offer_doc("dup"),
                offer_doc(None),
                offer_doc(7),
                offer_doc("has space"),
                offer_doc("x" * 129),
                "not a mapping",
            ],
        }
    )
    with pytest.raises(OfferCatalogError) as caught:
        load_catalog(path)
    errors = caught.value.errors
    assert errors == [
        f"{path}: offers[0] (dup): cost: must not be negative, got -1",
        f"{path}: offers[1] (dup): offer_id: duplicate of offers[0]",
        f"{path}: offers[2] (no offer_id): offer_id: missing",
        f"{path}: offers[3] (no offer_id): offer_id: expected a string, got int 7",
        f"{path}: offers[4] (has space): offer_id: 'has space' contains whitespace",
        f"{path}: offers[5] ({'x' * 129}): offer_id: is 129 characters long; the maximum is 128",
        f"{path}: offers[6]: expected a mapping of fields, got str 'not a mapping'",
    ]
    assert str(caught.value) == "\n".join(errors)  # every problem at once


def test_unknown_tier_is_an_error_only_when_the_catalog_declares_tiers() -> None:
    assert catalog_of(offer_doc(tiers=["Diamond"])).offers[0].tiers == ("diamond",)
    with pytest.raises(OfferCatalogError, match=r"offers\[0\] \(o1\): tiers\[0\]: unknown tier"):
        catalog_of(offer_doc(tiers=["diamond"]), tiers=["bronze", "gold"])
    assert catalog_of(offer_doc(tiers=["GOLD"]), tiers=["Gold"]).offers[0].tiers == ("gold",)


@pytest.mark.parametrize(
    ("doc", "words"),
    [
        ({"offers": []}, "version: missing"),
        ({"version": 2, "offers": []}, "version: 2 is not supported (supported: 1)"),
        ({"version": "1", "offers": []}, "version: expected an integer, got str"),
        ({"version": True, "offers": []}, "version: expected an integer, got bool"),
        ({"version": 1}, "offers: missing"),
        ({"version": 1, "offers": {"a": 1}}, "offers: expected a list, got dict"),
        ({"version": 1, "offers": [], "offer": []}, "offer: unknown field; did you mean 'offers'"),
        ({"version": 1, "offers": [], "tiers": "gold"}, "tiers: expected a list of strings"),
        ([1, 2], "the catalog must be a mapping"),
        (None, "the catalog must be a mapping"),
    ],
)
def test_document_errors(write_catalog: WriteCatalog, doc: Any, words: str) -> None:
    path = write_catalog(doc)
    with pytest.raises(OfferCatalogError) as caught:
        load_catalog(path)
    assert caught.value.errors[0].startswith(f"{path}: ")
    assert words in str(caught.value)


def test_file_errors(tmp_path: Path) -> None:
    bad_yaml = tmp_path / "bad.yaml"
    bad_yaml.write_text("version: 1\noffers:\n  - offer_id: a\n   title: [unclosed\n")
    with pytest.raises(OfferCatalogError, match=rf"^{bad_yaml}:\d+: invalid YAML"):
        load_catalog(bad_yaml)
    bad_json = tmp_path / "bad.json"
    bad_json.write_text('{"version": 1,\n "offers": [,]}')
    with pytest.raises(OfferCatalogError, match=rf"^{bad_json}:2: invalid JSON"):
        load_catalog(bad_json)
    with pytest.raises(OfferCatalogError, match=r"unsupported extension '\.toml'"):
        load_catalog(tmp_path / "offers.toml")
    with pytest.raises(OfferCatalogError, match="cannot read"):
        load_catalog(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00")
    with pytest.raises(OfferCatalogError, match="not UTF-8"):
        load_catalog(binary)


def test_empty_catalog_is_valid(write_catalog: WriteCatalog) -> None:
    catalog = load_catalog(write_catalog({"version": 1, "offers": []}))
    assert len(catalog) == 0
    assert recommend_offers(catalog, member(), CTX, {}, {}, {}, 5, np.random.default_rng(0)) == []


# -- eligibility ---------------------------------------------------------------------------


def at(moment: datetime, surface: str = "home", channel: str = "web") -> OfferContext:
    return OfferContext(now=moment, surface=surface, channel=channel)


def test_validity_window() -> None:
    o = one(valid_from="2026-06-01", valid_until="2026-06-30")
    assert "not valid yet" in str(
        eligible(o, member(), at(datetime(2026, 5, 31, 23, 59, tzinfo=UTC)))
    )
    assert eligible(o, member(), at(datetime(2026, 6, 1, tzinfo=UTC))) is None
    assert eligible(o, member(), at(datetime(2026, 6, 30, 23, 59, 59, tzinfo=UTC))) is None
    assert "expired" in str(eligible(o, member(), at(datetime(2026, 7, 1, tzinfo=UTC))))
    # A naive "now" is UTC; an aware one in another zone is converted.
    assert eligible(o, member(), at(datetime(2026, 6, 1, 0, 30))) is None
    new_york = timezone(timedelta(hours=-5))
    assert "expired" in str(eligible(o, member(), at(datetime(2026, 6, 30, 20, tzinfo=new_york))))
    open_ended = one(valid_from="2026-06-01T12:00:00Z")
    assert eligible(open_ended, member(), at(datetime(2026, 6, 1, 11, 59, tzinfo=UTC)))
    assert eligible(open_ended, member(), at(datetime(2099, 1, 1, tzinfo=UTC))) is None


def test_surfaces_and_channels() -> None:
    o = one(surfaces=["cart", "checkout"], channels=["iOS", "android"])
    assert eligible(o, member(), at(NOW, "cart", "ios")) is None
    assert eligible(o, member(), at(NOW, "checkout", "Android")) is None
    assert "surface home is not one of cart, checkout" in str(
        eligible(o, member(), at(NOW, "home", "ios"))
    )
    assert "surface unspecified" in str(eligible(o, member(), at(NOW, "", "ios")))
    assert "channel web is not one of ios, android" in str(
        eligible(o, member(), at(NOW, "cart", "web"))
    )
    assert "channel unspecified" in str(eligible(o, member(), at(NOW, "cart", "")))
    anywhere = one()
    assert eligible(anywhere, member(), at(NOW, "", "")) is None


def test_budget_cap() -> None:
    o = one(cost=5.0, budget=100)
    assert eligible(o, member(), CTX, OfferUsage(spent=95.0)) is None  # the last one fits
    assert "budget exhausted" in str(eligible(o, member(), CTX, OfferUsage(spent=95.5)))
    assert "budget exhausted" in str(eligible(o, member(), CTX, OfferUsage(spent=100.0)))
    assert eligible(one(cost=5.0), member(), CTX, OfferUsage(spent=1e9)) is None


def test_per_customer_redemption_cap() -> None:
    o = one(max_redemptions_per_customer=2)
    assert eligible(o, member(), CTX, OfferUsage(redemptions=1)) is None
    assert "already redeemed 2 times (cap 2)" in str(
        eligible(o, member(), CTX, OfferUsage(redemptions=2))
    )
    assert eligible(one(), member(), CTX, OfferUsage(redemptions=50)) is None


def test_impressions_per_day_cap() -> None:
    o = one(max_impressions_per_day=3)
    assert eligible(o, member(), CTX, OfferUsage(impressions_today=2)) is None
    assert "already shown 3 times today (cap 3)" in str(
        eligible(o, member(), CTX, OfferUsage(impressions_today=3))
    )


def test_segments_stages_tiers_points() -> None:
    by_segment = one(segments=["high_value"])
    assert eligible(by_segment, member(segment="high_value"), CTX) is None
    assert "segment mid_value is not one of high_value" in str(eligible(by_segment, member(), CTX))
    by_stage = one(lifecycle_stages=["at_risk", "lapsed"])
    assert eligible(by_stage, member(lifecycle_stage="lapsed"), CTX) is None
    assert "lifecycle stage active" in str(eligible(by_stage, member(), CTX))
    by_tier = one(tiers=["Gold", "platinum"])
    assert eligible(by_tier, member(tier="gold"), CTX) is None
    assert eligible(by_tier, member(tier="PLATINUM"), CTX) is None
    assert "tier silver is not one of gold, platinum" in str(eligible(by_tier, member(), CTX))
    assert "tier none" in str(eligible(by_tier, member(tier=""), CTX))
    by_points = one(min_points=250)
    assert eligible(by_points, member(points=250), CTX) is None
    assert "249 points, fewer than the 250 needed" in str(
        eligible(by_points, member(points=249), CTX)
    )


def test_first_purchase_only() -> None:
    o = one(first_purchase_only=True)
    assert eligible(o, member(purchases=0, lifecycle_stage="prospect"), CTX) is None
    assert eligible(o, CustomerState.prospect("anon"), CTX) is None
    assert "first purchase only; the customer has 1 purchases" in str(
        eligible(o, member(purchases=1), CTX)
    )
    # Not personal data: it holds without consent too.
    no_consent = member(purchases=3, consent_personalization=False)
    assert "first purchase only" in str(eligible(o, no_consent, CTX))


def on(day: date) -> OfferContext:
    return at(datetime(day.year, day.month, day.day, 9, tzinfo=UTC))


@pytest.mark.parametrize(
    ("birthday", "today", "window", "ok"),
    [
        (date(1990, 3, 10), date(2026, 3, 10), 0, True),
        (date(1990, 3, 10), date(2026, 3, 11), 0, False),
        (date(1990, 3, 10), date(2026, 3, 3), 7, True),  # a week before
        (date(1990, 3, 10), date(2026, 3, 17), 7, True),  # a week after
        (date(1990, 3, 10), date(2026, 3, 18), 7, False),
        (date(1990, 3, 10), date(2026, 3, 2), 7, False),
        (date(1985, 12, 28), date(2027, 1, 3), 7, True),  # after, across New Year
        (date(1985, 12, 28), date(2027, 1, 5), 7, False),
        (date(2001, 1, 2), date(2026, 12, 27), 7, True),  # before, across New Year
        (date(2001, 1, 2), date(2026, 12, 25), 7, False),
        (date(2000, 2, 29), date(2026, 2, 28), 0, True),  # leap-day birthday, common year
        (date(2000, 2, 29), date(2028, 2, 29), 0, True),
        (date(2000, 2, 29), date(2028, 2, 28), 0, False),
    ],
)
def test_birthday_window(birthday: date, today: date, window: int, ok: bool) -> None:
    o = one(birthday_window_days=window)
    reason = eligible(o, member(birthday=birthday), on(today))
    assert (reason is None) is ok, reason


def test_birthday_distance_and_missing_birthday() -> None:
    assert birthday_distance(date(1970, 12, 31), date(2026, 1, 1)) == 1
    assert birthday_distance(date(1970, 1, 1), date(2026, 12, 31)) == 1
    assert birthday_distance(date(1970, 7, 1), date(2026, 1, 1)) == 181
    assert "no birthday on file" in str(
        eligible(one(birthday_window_days=7), member(birthday=None), CTX)
    )


def test_unknown_customer_is_a_prospect() -> None:
    anon = CustomerState.prospect("visitor-1")
    assert anon.segment == "prospect" and anon.lifecycle_stage == "prospect"
    assert eligible(one(lifecycle_stages=["prospect", "new"]), anon, CTX) is None
    assert eligible(one(), anon, CTX) is None  # open to anyone
    assert "segment prospect" in str(eligible(one(segments=["low_value"]), anon, CTX))
    assert eligible(one(segments=["prospect"]), anon, CTX) is None
    assert "tier none" in str(eligible(one(tiers=["bronze"]), anon, CTX))
    assert "no birthday" in str(eligible(one(birthday_window_days=7), anon, CTX))
    assert "0 points" in str(eligible(one(min_points=1), anon, CTX))
    # Whatever the caller filled in, known=False is a prospect.
    pretend = member(known=False, segment="high_value", tier="gold")
    assert eligible(one(segments=["high_value"]), pretend, CTX) is not None
    # A known customer without a computed stage and without purchases is a prospect too.
    assert (
        eligible(one(lifecycle_stages=["prospect"]), member(lifecycle_stage="", purchases=0), CTX)
        is None
    )
    assert eligible(
        one(lifecycle_stages=["prospect"]), member(lifecycle_stage="", purchases=2), CTX
    )


def test_no_consent_means_only_offers_open_to_prospects() -> None:
    c = member(
        segment="high_value",
        tier="gold",
        points=9000,
        lifecycle_stage="lapsed",
        birthday=NOW.date(),
        consent_personalization=False,
    )
    for fields in (
        {"segments": ["high_value"]},
        {"tiers": ["gold"]},
        {"lifecycle_stages": ["lapsed"]},
        {"min_points": 100},
        {"birthday_window_days": 3},
    ):
        reason = eligible(one(**fields), c, CTX)
        assert reason is not None and "no personalization" in reason, fields
    assert eligible(one(), c, CTX) is None
    assert eligible(one(lifecycle_stages=["prospect"]), c, CTX) is None


# -- ranking -------------------------------------------------------------------------------


def stats(impressions: int, redemptions: int, **by_segment: tuple[int, int]) -> OfferStats:
    return OfferStats(
        impressions=impressions,
        redemptions=redemptions,
        by_segment={
            s: OfferStats(impressions=n, redemptions=r) for s, (n, r) in by_segment.items()
        },
    )


def rank(
    catalog: OfferCatalog,
    customer: CustomerState | None = None,
    stats_by_offer: dict[str, OfferStats] | None = None,
    affinity: dict[str, float] | None = None,
    usage: dict[str, OfferUsage] | None = None,
    policy: OfferPolicy = GREEDY,
    limit: int = 10,
    context: OfferContext = CTX,
    seed: int = 0,
) -> list[str]:
    return [
        c.offer_id
        for c in recommend_offers(
            catalog,
            customer or member(),
            context,
            usage or {},
            stats_by_offer or {},
            affinity or {},
            limit,
            np.random.default_rng(seed),
            policy,
        )
    ]


def test_expected_value_ranks_value_times_probability() -> None:
    catalog = catalog_of(
        offer_doc("often-cheap", value_to_business=2.0),
        offer_doc("rare-dear", value_to_business=10.0),
        offer_doc("middle", value_to_business=4.0),
    )
    observed = {
        "often-cheap": stats(10_000, 3_000),  # p ~ 0.30 -> EV ~ 0.60
        "rare-dear": stats(10_000, 1_000),  # p ~ 0.10 -> EV ~ 1.00
        "middle": stats(10_000, 2_000),  # p ~ 0.20 -> EV ~ 0.80
    }
    choices = recommend_offers(
        catalog, member(), CTX, {}, observed, {}, 10, np.random.default_rng(0), GREEDY
    )
    assert [c.offer_id for c in choices] == ["rare-dear", "middle", "often-cheap"]
    for c in choices:
        assert c.expected_value == pytest.approx(
            c.probability * catalog.offer(c.offer_id).value_to_business
        )
    assert choices[0].probability == pytest.approx(1_001 / 10_020)
    assert (choices[0].title, choices[0].kind, choices[0].value) == (
        "offer rare-dear",
        "percent_off",
        10,
    )
    # Sampled, the posteriors are narrow enough that the order holds for any seed.
    for seed in range(20):
        assert (
            rank(catalog, stats_by_offer=observed, policy=OfferPolicy(), seed=seed)[0]
            == "rare-dear"
        )


def test_limits_and_bad_requests() -> None:
    catalog = catalog_of(*(offer_doc(f"o{i}") for i in range(6)))
    assert len(rank(catalog, limit=2)) == 2
    assert len(rank(catalog, limit=0)) == OfferPolicy().default_limit
    with pytest.raises(InvalidRequest, match="limit 51 is out of range"):
        rank(catalog, limit=51)
    with pytest.raises(InvalidRequest, match="limit -1"):
        rank(catalog, limit=-1)
    with pytest.raises(InvalidRequest, match="surface 'basket' is unknown"):
        rank(catalog, context=at(NOW, "basket"))


def test_only_eligible_offers_are_ranked() -> None:
    catalog = catalog_of(
        offer_doc("capped", max_redemptions_per_customer=1),
        offer_doc("broke", cost=5, budget=10),
        offer_doc("seen", max_impressions_per_day=1),
        offer_doc("gold", tiers=["gold"]),
        offer_doc("fine"),
    )
    usage = {
        "capped": OfferUsage(redemptions=1),
        "broke": OfferUsage(spent=10),
        "seen": OfferUsage(impressions_today=1),
    }
    assert rank(catalog, usage=usage) == ["fine"]
    assert rank(catalog, usage=usage, customer=member(tier="Gold")) == ["gold", "fine"]


def test_affinity_lifts_an_offer_for_this_customer_only() -> None:
    catalog = catalog_of(offer_doc("store-wide"), offer_doc("coffee", categories=["coffee"]))
    observed = {"store-wide": stats(5000, 500), "coffee": stats(5000, 400)}
    assert rank(catalog, stats_by_offer=observed) == ["store-wide", "coffee"]
    likes_coffee = {"coffee": 1.5}
    assert rank(catalog, stats_by_offer=observed, affinity=likes_coffee) == ["coffee", "store-wide"]
    # Clipped: an absurd z-score is worth no more than 3 standard deviations.
    huge = recommend_offers(
        catalog, member(), CTX, {}, observed, {"coffee": 1e9}, 2, np.random.default_rng(0), GREEDY
    )
    three = recommend_offers(
        catalog, member(), CTX, {}, observed, {"coffee": 3.0}, 2, np.random.default_rng(0), GREEDY
    )
    assert huge == three
    # Not used without consent or for an unknown customer.
    no_consent = member(consent_personalization=False)
    assert rank(catalog, no_consent, observed, likes_coffee) == ["store-wide", "coffee"]
    anon = CustomerState.prospect("x")
    assert rank(catalog, anon, observed, likes_coffee) == ["store-wide", "coffee"]


def test_segment_counts_refine_the_overall_rate() -> None:
    catalog = catalog_of(offer_doc("a"), offer_doc("b"))
    observed = {
        "a": stats(20_000, 2_000, high_value=(2_000, 40)),  # 10% overall, 2% for high value
        "b": stats(20_000, 1_200, high_value=(2_000, 160)),  # 6% overall, 8% for high value
    }
    assert rank(catalog, member(segment="mid_value"), observed) == ["a", "b"]
    assert rank(catalog, member(segment="high_value"), observed) == ["b", "a"]
    # Without consent the segment is not used.
    hidden = member(segment="high_value", consent_personalization=False)
    assert rank(catalog, hidden, observed) == ["a", "b"]


def test_targeted_offers_get_a_bonus_that_fades_with_data() -> None:
    catalog = catalog_of(offer_doc("open"), offer_doc("for-you", segments=["mid_value"]))
    fresh = {"open": stats(0, 0), "for-you": stats(0, 0)}
    assert rank(catalog, stats_by_offer=fresh) == ["for-you", "open"]
    # Same observed rates, lots of data: the bonus is nearly gone and the rates decide.
    observed = {"open": stats(100_000, 5_200), "for-you": stats(100_000, 5_000)}
    assert rank(catalog, stats_by_offer=observed) == ["open", "for-you"]


def test_sampling_is_deterministic_given_the_rng() -> None:
    catalog = load_catalog(EXAMPLE)
    customer = member(tier="gold", points=500, birthday=date(1980, 6, 18))
    ctx = at(NOW, "cart", "ios")

    def draw(seed: int) -> list[OfferChoice]:
        return recommend_offers(catalog, customer, ctx, {}, {}, {}, 8, np.random.default_rng(seed))

    first, again, other = draw(42), draw(42), draw(43)
    assert first == again
    assert [c.probability for c in first] != [c.probability for c in other]
    assert [c.expected_value for c in first] == sorted(
        (c.expected_value for c in first), reverse=True
    )


def test_reasons() -> None:
    catalog = catalog_of(
        offer_doc("bday", birthday_window_days=7),
        offer_doc("welcome", first_purchase_only=True),
        offer_doc("for-new", lifecycle_stages=["new", "active"]),
        offer_doc("winback", lifecycle_stages=["at_risk", "lapsed"]),
        offer_doc("vip", tiers=["gold"]),
        offer_doc("coffee", categories=["tea", "coffee"]),
        offer_doc("gadget", products=["P1"]),
        offer_doc("plain", reason="this week only"),
        offer_doc("titled"),
    )

    def reasons(
        customer: CustomerState, affinity: dict[str, float] | None = None
    ) -> dict[str, str]:
        choices = recommend_offers(
            catalog, customer, CTX, {}, {}, affinity or {}, 50, np.random.default_rng(0), GREEDY
        )
        return {c.offer_id: c.reason for c in choices}

    everyone = {"plain": "this week only", "titled": "offer titled"}
    gold = member(
        tier="gold",
        lifecycle_stage="at_risk",
        birthday=NOW.date(),
        top_categories=("coffee", "snacks"),
    )
    assert reasons(gold) == {
        "bday": "happy birthday",
        "winback": "we miss you",
        "vip": "Gold member",
        "coffee": "you often buy coffee",
        "gadget": "offer gadget",  # no affinity given: nothing personal to say
        **everyone,
    }
    fan = member(lifecycle_stage="new", top_categories=("snacks",))
    assert reasons(fan, {"coffee": 1.0, "gadget": 2.0}) == {
        "for-new": "welcome offer",
        "coffee": "you might like tea",
        "gadget": "picked for you",
        **everyone,
    }
    assert reasons(CustomerState.prospect("x")) == {
        "welcome": "welcome offer",
        "coffee": "offer coffee",
        "gadget": "offer gadget",
        **everyone,
    }
    # No consent: no personal reason even where the offer would say one.
    private = member(consent_personalization=False, purchases=0, top_categories=("coffee",))
    assert reasons(private, {"coffee": 3.0}) == {
        "welcome": "welcome offer",
        "coffee": "offer coffee",
        "gadget": "offer gadget",
        **everyone,
    }


def test_thompson_sampling_explores_new_offers() -> None:
    catalog = catalog_of(offer_doc("known"), offer_doc("new"))
    observed = {"known": stats(50_000, 2_500)}  # a solid 5%, the prior's mean
    rng = np.random.default_rng(3)
    picks = [
        recommend_offers(catalog, member(), CTX, {}, observed, {}, 1, rng)[0].offer_id
        for _ in range(1000)
    ]
    share_new = picks.count("new") / len(picks)
    assert 0.2 < share_new < 0.6  # a wide posterior around the same mean: tried often
    # A weak offer with evidence fades.
    weak = {"known": stats(50_000, 2_500), "new": stats(2_000, 10)}
    rng = np.random.default_rng(3)
    picks = [
        recommend_offers(catalog, member(), CTX, {}, weak, {}, 1, rng)[0].offer_id
        for _ in range(1000)
    ]
    assert picks.count("new") == 0


def test_thompson_sampling_shifts_impressions_to_the_better_offer() -> None:
    """Two offers of equal value redeeming at 10% and 2%: the bandit learns from what it shows."""
    catalog = catalog_of(
        offer_doc("A", value_to_business=5.0), offer_doc("B", value_to_business=5.0)
    )
    true_rate = {"A": 0.10, "B": 0.02}
    counts = {o: [0, 0] for o in true_rate}  # impressions, redemptions
    rng = np.random.default_rng(2026)
    shown: list[str] = []
    for _ in range(3000):
        observed = {o: OfferStats(impressions=n, redemptions=r) for o, (n, r) in counts.items()}
        pick = recommend_offers(catalog, member(), CTX, {}, observed, {}, 1, rng)[0].offer_id
        counts[pick][0] += 1
        counts[pick][1] += int(rng.random() < true_rate[pick])
        shown.append(pick)
    share_a = shown.count("A") / len(shown)
    assert share_a > 0.8, counts
    assert shown[-500:].count("A") / 500 > 0.9  # and it keeps improving
    assert counts["B"][0] > 20  # B was given a chance before fading
