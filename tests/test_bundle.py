"""Model bundles: atomic write, verified load, publish, rollback, listing."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from formats.bundle import (
    CURRENT,
    DATA_FILES,
    FACTORS,
    FORMAT_VERSION,
    HISTORY,
    MANIFEST,
    BundleContents,
    BundleError,
    current_version,
    history,
    list_versions,
    load_bundle,
    publish,
    rollback,
    sha256_file,
    write_bundle,
)
from training.index import IndexConfig, build_index, normalized

# Types of the conftest.py fixtures.
MakeContents = Callable[..., BundleContents]
AddBundle = Callable[..., str]
Damage = Callable[[Path], None]


def names_in(model_dir: Path) -> set[str]:
    return {p.name for p in model_dir.iterdir()}


def rewrite_manifest(bundle_dir: Path, **changes: Any) -> None:
    manifest = json.loads((bundle_dir / MANIFEST).read_text())
    manifest.update(changes)
    (bundle_dir / MANIFEST).write_text(json.dumps(manifest))


# ---------------------------------------------------------------------------------------------
# Round trip


def test_write_publish_load_round_trip(model_dir: Path, make_contents: MakeContents) -> None:
    contents = make_contents(seed=1)

    path = write_bundle(model_dir, contents, "v1")
    published = publish(model_dir, "v1")
    loaded = load_bundle(path)

    assert path == model_dir / "v1"
    assert published.version == loaded.version == "v1"
    assert current_version(model_dir) == "v1"
    for bundle in (published, loaded):
        assert bundle.path == path
        np.testing.assert_array_equal(bundle.user_factors, contents.user_factors)
        np.testing.assert_array_equal(bundle.item_factors, contents.item_factors)
        assert bundle.user_factors.dtype == bundle.item_factors.dtype == np.float32
        assert bundle.customer_ids.to_list() == contents.customer_ids.to_list()
        assert bundle.products.equals(contents.products)
        assert bundle.user_items.shape == contents.user_items.shape
        np.testing.assert_array_equal(bundle.user_items.toarray(), contents.user_items.toarray())
        assert bundle.index.ntotal == contents.item_factors.shape[0]
        assert bundle.index.d == contents.item_factors.shape[1]
    # The index answers like the one written.
    queries = contents.user_factors
    expected_scores, expected_ids = contents.index.search(queries, 3)
    scores, ids = loaded.index.search(queries, 3)
    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, rtol=1e-6)


def test_manifest_fields(model_dir: Path, make_contents: MakeContents) -> None:
    contents = make_contents(seed=2, n_users=5, n_items=7, factors=3)
    path = write_bundle(model_dir, contents, "v1")

    manifest = load_bundle(path).manifest
    on_disk = json.loads((path / MANIFEST).read_text())

    assert manifest == on_disk
    assert manifest["format"] == "recsvc-model-bundle"
    assert manifest["format_version"] == FORMAT_VERSION == 1
    assert manifest["version"] == "v1"
    assert manifest["seed"] == 2  # the caller's fields are kept
    assert manifest["shapes"] == {
        "customers": 5,
        "products": 7,
        "user_factors": [5, 3],
        "item_factors": [7, 3],
    }
    assert set(manifest["files"]) == set(DATA_FILES)
    for name, entry in manifest["files"].items():
        assert entry["sha256"] == sha256_file(path / name)
        assert len(entry["sha256"]) == 64
        assert entry["bytes"] == (path / name).stat().st_size


def test_cosine_index_over_normalized_vectors_round_trips(
    model_dir: Path, make_contents: MakeContents
) -> None:
    base = make_contents(seed=3)
    unit = normalized(base.item_factors)
    contents = BundleContents(
        manifest=base.manifest,
        customer_ids=base.customer_ids,
        products=base.products,
        user_factors=base.user_factors,
        item_factors=base.item_factors,
        user_items=base.user_items,
        index=build_index(unit, IndexConfig()),
    )
    loaded = publish(model_dir, write_bundle(model_dir, contents, "v1").name)
    scores, ids = loaded.index.search(unit[:2], 1)
    assert ids[:, 0].tolist() == [0, 1]  # each product is its own nearest neighbour
    np.testing.assert_allclose(scores[:, 0], 1.0, rtol=1e-5)


# ---------------------------------------------------------------------------------------------
# Verification on load


@pytest.mark.parametrize("name", DATA_FILES)
def test_flipped_byte_is_detected(
    model_dir: Path, add_bundle: AddBundle, damage_file: Damage, name: str
) -> None:
    add_bundle("v1", publish_it=False)
    damage_file(model_dir / "v1" / name)
    with pytest.raises(BundleError, match=rf"{name} is damaged \(checksum mismatch\)"):
        load_bundle(model_dir / "v1")


def test_truncated_file_is_detected(model_dir: Path, add_bundle: AddBundle) -> None:
    add_bundle("v1", publish_it=False)
    file = model_dir / "v1" / FACTORS
    file.write_bytes(file.read_bytes()[:-10])
    with pytest.raises(BundleError, match="damaged"):
        load_bundle(model_dir / "v1")


@pytest.mark.parametrize("version", [2, 0, None, "1"])
def test_other_format_version_is_refused(
    model_dir: Path, add_bundle: AddBundle, version: object
) -> None:
    add_bundle("v1", publish_it=False)
    rewrite_manifest(model_dir / "v1", format_version=version)
    with pytest.raises(BundleError, match=rf"format version {version} is not supported"):
        load_bundle(model_dir / "v1")


@pytest.mark.parametrize("name", DATA_FILES)
def test_missing_file_is_refused(model_dir: Path, add_bundle: AddBundle, name: str) -> None:
    add_bundle("v1", publish_it=False)
    (model_dir / "v1" / name).unlink()
    with pytest.raises(BundleError, match=rf"missing {name}"):
        load_bundle(model_dir / "v1")


def test_missing_or_garbled_manifest_is_refused(model_dir: Path, add_bundle: AddBundle) -> None:
    add_bundle("v1", publish_it=False)
    (model_dir / "v1" / MANIFEST).write_text('{"format": "recsvc-model-bundle", ')
    with pytest.raises(BundleError, match="damaged manifest"):
        load_bundle(model_dir / "v1")
    (model_dir / "v1" / MANIFEST).unlink()
    with pytest.raises(BundleError, match="not a model bundle"):
        load_bundle(model_dir / "v1")


@pytest.mark.parametrize("key", ["files", "shapes"])
def test_manifest_missing_a_section_is_a_bundle_error(
    model_dir: Path, add_bundle: AddBundle, key: str
) -> None:
    add_bundle("v1", seed=1)
    add_bundle("v2", seed=2, publish_it=False)
    manifest = json.loads((model_dir / "v2" / MANIFEST).read_text())
    del manifest[key]
    (model_dir / "v2" / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError):
        publish(model_dir, "v2")
    assert current_version(model_dir) == "v1"


def test_inconsistent_index_is_refused(model_dir: Path, make_contents: MakeContents) -> None:
    good = make_contents(seed=4, n_items=8)
    other = make_contents(seed=5, n_items=5)
    contents = BundleContents(
        manifest=good.manifest,
        customer_ids=good.customer_ids,
        products=good.products,
        user_factors=good.user_factors,
        item_factors=good.item_factors,
        user_items=good.user_items,
        index=other.index,  # 5 vectors for 8 products
    )
    write_bundle(model_dir, contents, "v1")
    with pytest.raises(BundleError, match=r"inconsistent bundle: items\.faiss holds 5x4"):
        load_bundle(model_dir / "v1")


# ---------------------------------------------------------------------------------------------
# Publish


def test_publish_of_damaged_bundle_keeps_the_good_one(
    model_dir: Path, add_bundle: AddBundle, damage_file: Damage
) -> None:
    add_bundle("v1", seed=1)
    add_bundle("v2", seed=2, publish_it=False)
    damage_file(model_dir / "v2" / FACTORS)

    with pytest.raises(BundleError, match="checksum"):
        publish(model_dir, "v2")

    assert current_version(model_dir) == "v1"
    assert history(model_dir) == ["v1"]
    assert load_bundle(model_dir / "v1").version == "v1"


def test_publish_of_unknown_version_keeps_the_good_one(
    model_dir: Path, add_bundle: AddBundle
) -> None:
    add_bundle("v1", seed=1)
    (model_dir / ".tmp-v2-abc").mkdir()
    with pytest.raises(BundleError, match="no bundle named 'v3'"):
        publish(model_dir, "v3")
    with pytest.raises(BundleError, match="is not a model version"):
        publish(model_dir, ".tmp-v2-abc")
    assert current_version(model_dir) == "v1"
    assert history(model_dir) == ["v1"]


@pytest.mark.parametrize("mismatch", ["customers", "products"])
def test_bundle_whose_id_map_does_not_match_the_factors_is_never_published(
    model_dir: Path, add_bundle: AddBundle, make_contents: MakeContents, mismatch: str
) -> None:
    add_bundle("v1", seed=1)
    good = make_contents(seed=2, n_users=6, n_items=8)
    bad = BundleContents(
        manifest=good.manifest,
        customer_ids=good.customer_ids[:3] if mismatch == "customers" else good.customer_ids,
        products=good.products.head(5) if mismatch == "products" else good.products,
        user_factors=good.user_factors,
        item_factors=good.item_factors,
        user_items=good.user_items,
        index=good.index,
    )

    with pytest.raises(BundleError):  # on write, or at the latest on publish
        write_bundle(model_dir, bad, "v2")
        publish(model_dir, "v2")

    assert current_version(model_dir) == "v1"
    assert history(model_dir) == ["v1"]


def test_publish_writes_current_atomically(model_dir: Path, add_bundle: AddBundle) -> None:
    add_bundle("v1", seed=1)
    assert names_in(model_dir) == {"v1", CURRENT, HISTORY}
    assert (model_dir / CURRENT).read_text() == "v1\n"

    add_bundle("v2", seed=2)
    assert names_in(model_dir) == {"v1", "v2", CURRENT, HISTORY}  # no temp files left
    assert (model_dir / CURRENT).read_text() == "v2\n"
    assert (model_dir / CURRENT).read_text().split() == ["v2"]
    assert (model_dir / HISTORY).read_text() == "v1\nv2\n"


def test_republishing_moves_the_version_to_the_end_of_history(
    model_dir: Path, add_bundle: AddBundle
) -> None:
    add_bundle("v1", seed=1)
    add_bundle("v2", seed=2)
    publish(model_dir, "v1")
    assert current_version(model_dir) == "v1"
    assert history(model_dir) == ["v2", "v1"]


# ---------------------------------------------------------------------------------------------
# Failed writes


@pytest.mark.parametrize("broken", ["index", "user_items"])
def test_write_failing_midway_leaves_nothing_behind(
    model_dir: Path, add_bundle: AddBundle, make_contents: MakeContents, broken: str
) -> None:
    add_bundle("v1", seed=1)
    before = names_in(model_dir)
    if broken == "index":
        contents = make_contents(seed=2, index=object())  # not a faiss index
    else:
        contents = make_contents(seed=2, user_items=[[1.0, 0.0]])  # not a CSR matrix

    with pytest.raises((TypeError, AttributeError, BundleError)):
        write_bundle(model_dir, contents, "v2")

    assert not (model_dir / "v2").exists()
    assert not [name for name in names_in(model_dir) if name.startswith(".tmp-")]
    assert names_in(model_dir) == before
    assert current_version(model_dir) == "v1"
    assert [row["version"] for row in list_versions(model_dir)] == ["v1"]


def test_write_refuses_to_replace_an_existing_version(
    model_dir: Path, add_bundle: AddBundle, make_contents: MakeContents
) -> None:
    add_bundle("v1", seed=1)
    manifest_before = (model_dir / "v1" / MANIFEST).read_bytes()
    with pytest.raises(BundleError, match="already exists"):
        write_bundle(model_dir, make_contents(seed=2), "v1")
    assert (model_dir / "v1" / MANIFEST).read_bytes() == manifest_before
    assert not [name for name in names_in(model_dir) if name.startswith(".tmp-")]
    load_bundle(model_dir / "v1")


def test_written_bundle_is_readable_by_others(model_dir: Path, add_bundle: AddBundle) -> None:
    add_bundle("v1")
    assert (model_dir / "v1").stat().st_mode & 0o055 == 0o055  # group/other can list and read


# ---------------------------------------------------------------------------------------------
# Rollback


def test_rollback_goes_back_one_version_at_a_time(model_dir: Path, add_bundle: AddBundle) -> None:
    for i, version in enumerate(("v1", "v2", "v3")):
        add_bundle(version, seed=i)
    assert current_version(model_dir) == "v3"

    assert rollback(model_dir) == "v2"
    assert current_version(model_dir) == "v2"
    assert history(model_dir) == ["v1", "v2"]

    assert rollback(model_dir) == "v1"
    assert current_version(model_dir) == "v1"
    assert history(model_dir) == ["v1"]

    with pytest.raises(BundleError, match="no earlier published version"):
        rollback(model_dir)
    assert current_version(model_dir) == "v1"
    assert (model_dir / CURRENT).read_text() == "v1\n"
    assert {p.name for p in model_dir.iterdir()} == {"v1", "v2", "v3", CURRENT, HISTORY}


def test_rollback_skips_versions_that_no_longer_load(
    model_dir: Path, add_bundle: AddBundle, damage_file: Damage
) -> None:
    for i, version in enumerate(("v1", "v2", "v3")):
        add_bundle(version, seed=i)
    damage_file(model_dir / "v2" / DATA_FILES[0])

    assert rollback(model_dir) == "v1"
    assert current_version(model_dir) == "v1"


def test_rollback_with_nothing_published(model_dir: Path, add_bundle: AddBundle) -> None:
    with pytest.raises(BundleError, match="no earlier published version"):
        rollback(model_dir)
    add_bundle("v1", publish_it=False)
    with pytest.raises(BundleError, match="no earlier published version"):
        rollback(model_dir)
    assert current_version(model_dir) is None


# ---------------------------------------------------------------------------------------------
# Listing


def test_list_versions_flags_unreadable_bundles(
    model_dir: Path, add_bundle: AddBundle, damage_file: Damage
) -> None:
    add_bundle("v1", seed=1)
    add_bundle("v2", seed=2, publish_it=False)
    add_bundle("v3", seed=3, publish_it=False)
    add_bundle("v4", seed=4, publish_it=False)
    rewrite_manifest(model_dir / "v2", format_version=99)
    (model_dir / "v3" / MANIFEST).write_text("{not json")
    (model_dir / "v5").mkdir()  # no manifest at all
    (model_dir / ".tmp-v6-abc").mkdir()  # a crashed write: ignored
    damage_file(model_dir / "v4" / FACTORS)  # data damage is found on load, not when listing

    rows = list_versions(model_dir)

    assert [row["version"] for row in rows] == ["v1", "v2", "v3", "v4", "v5"]
    by_version = {row["version"]: row for row in rows}
    assert "error" not in by_version["v1"]
    assert by_version["v1"]["format_version"] == FORMAT_VERSION
    assert "error" not in by_version["v4"]
    assert "format version 99" in by_version["v2"]["error"]
    assert "damaged manifest" in by_version["v3"]["error"]
    assert "not a model bundle" in by_version["v5"]["error"]


def test_list_versions_of_missing_or_empty_dir(tmp_path: Path) -> None:
    assert list_versions(tmp_path / "absent") == []
    assert list_versions(tmp_path) == []


def test_extras_round_trip_and_are_checksummed(model_dir: Path, add_bundle: AddBundle) -> None:
    from dataclasses import replace

    base = load_bundle(model_dir / add_bundle("v1", seed=1))
    arrays: dict[str, np.ndarray] = {
        "indptr": np.arange(4, dtype=np.int64),
        "weights": np.ones(3, dtype=np.float32),
    }
    path = write_bundle(model_dir, replace(base, extras={"neighbours": arrays}), "v2")
    loaded = load_bundle(path)
    assert loaded.manifest["extras"] == ["neighbours"]
    assert np.array_equal(loaded.extras["neighbours"]["indptr"], arrays["indptr"])
    assert loaded.extras["neighbours"]["weights"].dtype == np.float32
    (path / "neighbours.npz").write_bytes(b"not an npz")
    with pytest.raises(BundleError, match=r"neighbours\.npz is damaged"):
        load_bundle(path)
    with pytest.raises(BundleError, match="extra 'Bad-Name'"):
        write_bundle(model_dir, replace(base, extras={"Bad-Name": arrays}), "v3")
