"""The `recsvc` command line: help, exit codes and one-line errors on stderr."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from formats.bundle import CURRENT, current_version
from recsvc.cli import main

WriteCsv = Callable[[str, Sequence[str]], Path]  # the write_csv fixture (conftest.py)
AddBundle = Callable[..., str]

HEADER = "customer_id,product_id,timestamp,event_type,quantity"
TRAIN_FAST = ["--quiet", "--factors", "4", "--iterations", "2"]


def good_rows(customers: int = 30, per_customer: int = 8, products: int = 12) -> list[str]:
    """A small deterministic purchase history with repeat products across customers."""
    day = 86_400
    return [
        f"c{c},p{(c * 5 + j * 7) % products},{1_704_067_200 + j * day + c * 60},purchase,1"
        for c in range(customers)
        for j in range(per_customer)
    ]


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


# ---------------------------------------------------------------------------------------------
# Help


HELP_CASES: list[tuple[list[str], list[str]]] = [
    ([], ["data", "train", "evaluate", "models", "--verbose"]),
    (["data"], ["synth", "movielens100k", "validate"]),
    (["data", "synth"], ["--customers", "--products", "--seed", "--format", "--out"]),
    (["data", "movielens100k"], ["--out"]),
    (["data", "validate"], ["--interactions", "--catalog", "--customers", "--on-error"]),
    (
        ["train"],
        [
            "--interactions",
            "--catalog",
            "--customers",
            "--model-dir",
            "--on-error",
            "--split",
            "--test-fraction",
            "--seed",
            "--tune",
            "--factors",
            "--event-weights",
            "--recall-floor",
            "--quiet",
        ],
    ),
    (["evaluate"], ["bundle", "--interactions", "--model-dir", "-k", "--on-error"]),
    (["models"], ["list", "show", "promote", "rollback"]),
    (["models", "list"], ["--model-dir"]),
    (["models", "show"], ["version", "--model-dir"]),
    (["models", "promote"], ["version", "--model-dir"]),
    (["models", "rollback"], ["--model-dir"]),
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
    out = capsys.readouterr().out
    assert out.startswith("usage: recsvc")
    for word in mentions:
        assert word in out, word


def test_no_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert "usage: recsvc" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------
# train


def test_train_with_a_bad_row_exits_2_naming_file_line_and_reason(
    write_csv: WriteCsv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = good_rows()
    rows[5] = "c0,p3,31/12/2024,purchase,1"  # CSV line 7
    path = write_csv("interactions.csv", [HEADER, *rows])
    model_dir = tmp_path / "models"

    code, _, err = run(
        ["train", "--interactions", str(path), "--model-dir", str(model_dir), *TRAIN_FAST],
        capsys,
    )

    assert code == 2
    assert err.startswith("recsvc train: error: 1 bad rows in ")
    assert f"{path}, line 7: unparseable timestamp '31/12/2024'" in err
    assert "--on-error=skip" in err
    assert "Traceback" not in err
    assert current_version(model_dir) is None
    assert not (model_dir / CURRENT).exists()


def test_train_skipping_bad_rows_publishes_and_lists(
    write_csv: WriteCsv, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = good_rows()
    rows[5] = "c0,p3,2024-01-01,purchase,-3"
    path = write_csv("interactions.csv", [HEADER, *rows])
    model_dir = tmp_path / "models"

    code, out, err = run(
        [
            "train",
            "--interactions",
            str(path),
            "--model-dir",
            str(model_dir),
            "--on-error",
            "skip",
            "-k",
            "5",
            *TRAIN_FAST,
        ],
        capsys,
    )

    assert code == 0, err
    assert f"{path}: read 240 rows, kept 239, dropped 1 (1 negative quantity)" in out
    version = current_version(model_dir)
    assert version is not None
    assert f"published {version}" in out
    manifest = json.loads((model_dir / version / "manifest.json").read_text())
    assert manifest["input"]["validation"][0]["dropped"] == {"negative quantity": 1}
    assert manifest["counts"] == {"customers": 30, "products": 12, "interactions": 239}

    code, out, _ = run(["models", "list", "--model-dir", str(model_dir)], capsys)
    assert code == 0
    assert out.startswith(f"* {version}  created ")
    assert "customers 30  products 12  serves " in out and " ndcg@5 " in out


@pytest.mark.parametrize(
    "bad_option",
    [
        ["--test-fraction", "1.5"],
        ["--target-events", "purchse"],
        ["-k", "0"],
        ["--cold-start-fraction", "1"],
        ["--cold-start-fraction", "-0.1"],
    ],
    ids=["test-fraction", "target-events", "k", "cold-start-one", "cold-start-negative"],
)
def test_train_rejects_bad_option_values_cleanly(
    write_csv: WriteCsv,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    bad_option: list[str],
) -> None:
    path = write_csv("interactions.csv", [HEADER, *good_rows()])
    argv = ["train", "--interactions", str(path), "--model-dir", str(tmp_path / "m")]
    try:
        code: object = main([*argv, *TRAIN_FAST, *bad_option])
    except SystemExit as exc:  # rejected by the argument parser: fine too
        code = exc.code
    err = capsys.readouterr().err
    assert code == 2
    assert "recsvc train: error: " in err


def test_train_with_a_missing_file_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "nope.csv"
    code, _, err = run(
        ["train", "--interactions", str(missing), "--model-dir", str(tmp_path / "m"), "--quiet"],
        capsys,
    )
    assert code == 2
    assert err == f"recsvc train: error: {missing}: no such file\n"


# ---------------------------------------------------------------------------------------------
# models


def test_models_list_on_an_empty_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for model_dir in (tmp_path, tmp_path / "absent"):
        code, out, err = run(["models", "list", "--model-dir", str(model_dir)], capsys)
        assert code == 0
        assert out == f"no bundles in {model_dir}\n"
        assert err == ""


def test_models_list_marks_current_and_unreadable(
    model_dir: Path, add_bundle: AddBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    add_bundle("v1", seed=1)
    add_bundle("v2", seed=2)
    (model_dir / "v3").mkdir()

    code, out, _ = run(["models", "list", "--model-dir", str(model_dir)], capsys)

    assert code == 0
    lines = out.splitlines()
    assert [line.split()[:2] for line in lines[:2]] == [["v1", "created"], ["*", "v2"]]
    assert lines[0].startswith("  v1  created ")
    assert lines[2].startswith("  v3  UNREADABLE: ")


def test_models_promote_unknown_version_exits_2(
    model_dir: Path, add_bundle: AddBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    add_bundle("v1")
    code, out, err = run(["models", "promote", "NOPE", "--model-dir", str(model_dir)], capsys)
    assert code == 2
    assert out == ""
    assert err == f"recsvc models: error: {model_dir}: no bundle named 'NOPE'\n"
    assert current_version(model_dir) == "v1"


def test_models_promote_and_rollback(
    model_dir: Path, add_bundle: AddBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    add_bundle("v1", seed=1)
    add_bundle("v2", seed=2, publish_it=False)

    code, out, _ = run(["models", "promote", "v2", "--model-dir", str(model_dir)], capsys)
    assert (code, out) == (0, "published v2\n")
    assert current_version(model_dir) == "v2"

    code, out, _ = run(["models", "rollback", "--model-dir", str(model_dir)], capsys)
    assert (code, out) == (0, "published v1\n")

    code, _, err = run(["models", "rollback", "--model-dir", str(model_dir)], capsys)
    assert code == 2
    assert err.startswith("recsvc models: error: ")
    assert "no earlier published version" in err
    assert current_version(model_dir) == "v1"


def test_models_show_prints_the_manifest(
    model_dir: Path, add_bundle: AddBundle, capsys: pytest.CaptureFixture[str]
) -> None:
    add_bundle("v1")
    code, out, _ = run(["models", "show", "--model-dir", str(model_dir)], capsys)
    assert code == 0
    assert json.loads(out)["version"] == "v1"

    code, _, err = run(["models", "show", "--model-dir", str(model_dir / "empty")], capsys)
    assert code == 2
    assert "no published model" in err


# ---------------------------------------------------------------------------------------------
# data validate


def test_data_validate_without_files_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(["data", "validate"], capsys)
    assert code == 2
    assert out == ""
    assert err == (
        "recsvc data: error: give at least one of --interactions, --catalog, --customers\n"
    )


def test_data_validate_reports_bad_rows(
    write_csv: WriteCsv, capsys: pytest.CaptureFixture[str]
) -> None:
    interactions = write_csv(
        "interactions.csv", [HEADER, "c1,p1,2024-01-01,purchase,1", "c2,p1,2024-01-01,buy,1"]
    )
    catalog = write_csv("catalog.csv", ["product_id,in_stock", "p1,yes"])

    code, _, err = run(
        ["data", "validate", "--interactions", str(interactions), "--catalog", str(catalog)],
        capsys,
    )
    assert code == 2
    assert f"{interactions}, line 3: unknown event_type 'buy'" in err

    code, out, _ = run(
        [
            "data",
            "validate",
            "--interactions",
            str(interactions),
            "--catalog",
            str(catalog),
            "--on-error",
            "skip",
        ],
        capsys,
    )
    assert code == 0
    assert out.splitlines() == [
        f"{interactions}: read 2 rows, kept 1, dropped 1 (1 unknown event_type)",
        f"  {interactions}, line 3: unknown event_type 'buy' "
        "(expected one of purchase, add_to_cart, click, view)",
        f"{catalog}: read 1 rows, kept 1",
    ]


def test_data_validate_unknown_format_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "catalog.xlsx"
    path.write_bytes(b"PK\x03\x04")
    code, _, err = run(["data", "validate", "--catalog", str(path)], capsys)
    assert code == 2
    assert err.startswith("recsvc data: error: ")
    assert "unknown format" in err


def test_movielens_download_failure_exits_2_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from training import movielens

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    # A local wheel path that does not exist: pip fails at once, without the network.
    monkeypatch.setattr(movielens, "WHEEL", str(tmp_path / "recbole-0.0.0-py3-none-any.whl"))
    code = main(["data", "movielens100k", "--out", str(tmp_path / "ml")])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("recsvc data: error: could not download")
