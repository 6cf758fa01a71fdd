# mypy: disable-error-code="no-untyped-call"
"""Damaged model bundles and offer catalogs: each one refused with FAILED_PRECONDITION (or at
start), CURRENT untouched, and the model and catalog that were serving keep serving.

Damage of two kinds: bytes changed after the bundle was written (the checksums catch it),
and bundles whose checksums match broken content (a buggy or hostile writer: the loader's
own checks must catch it, never an UNKNOWN).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import numpy as np
import polars as pl
import pytest
from redis_fixtures import new_namespace, start_server
from serving_fixtures import add_copy, trained

from feature_store.embedded import EmbeddedRedis
from formats import bundle as b
from recsvc.server import Running
from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc
from reliability.conftest import ROOT, VERSION
from reliability.rpcs import ROOT_TOKEN, TOKENS, bearer

AUTH = bearer(ROOT_TOKEN)
Damage = Callable[[Path], object]


def rehash(bundle: Path) -> None:
    """Make the manifest's checksums match whatever the files now hold."""
    manifest = json.loads((bundle / b.MANIFEST).read_text())
    for name in manifest["files"]:
        if (bundle / name).exists():
            manifest["files"][name] = {
                "sha256": b.sha256_file(bundle / name),
                "bytes": (bundle / name).stat().st_size,
            }
    (bundle / b.MANIFEST).write_text(json.dumps(manifest))


def flip(name: str) -> Damage:
    def damage(bundle: Path) -> None:
        data = bytearray((bundle / name).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (bundle / name).write_bytes(bytes(data))

    return damage


def truncate(name: str) -> Damage:
    def damage(bundle: Path) -> None:
        data = (bundle / name).read_bytes()
        (bundle / name).write_bytes(data[: len(data) // 2])

    return damage


def delete(name: str) -> Damage:
    return lambda bundle: (bundle / name).unlink()


def edit_manifest(change: Callable[[dict[str, object]], object]) -> Damage:
    def damage(bundle: Path) -> None:
        manifest = json.loads((bundle / b.MANIFEST).read_text())
        change(manifest)
        (bundle / b.MANIFEST).write_text(json.dumps(manifest))

    return damage


def consistent(damage: Damage) -> Damage:
    """``damage``, then checksums that match it."""

    def both(bundle: Path) -> None:
        damage(bundle)
        rehash(bundle)

    return both


def rewrite_products(change: Callable[[pl.DataFrame], pl.DataFrame]) -> Damage:
    def damage(bundle: Path) -> None:
        change(pl.read_parquet(bundle / b.PRODUCTS)).write_parquet(bundle / b.PRODUCTS)

    return damage


def rewrite_factors(bundle: Path) -> None:
    with np.load(bundle / b.FACTORS) as npz:
        users, items = npz["user_factors"], npz["item_factors"]
    np.savez(bundle / b.FACTORS, user_factors=users[:, :-1], item_factors=items[:, :-1])


def no_bytes(manifest: dict[str, object]) -> None:
    files = manifest["files"]
    assert isinstance(files, dict)
    del files[b.FACTORS]["bytes"]


def files_as_list(manifest: dict[str, object]) -> None:
    manifest["files"] = list(manifest["files"])  # type: ignore[call-overload]


DAMAGE: dict[str, Damage] = {
    **{f"flip-{n}": flip(n) for n in b.DATA_FILES},
    **{f"truncate-{n}": truncate(n) for n in (*b.DATA_FILES, b.MANIFEST)},
    **{f"delete-{n}": delete(n) for n in (*b.DATA_FILES, b.MANIFEST)},
    "empty-manifest": lambda p: (p / b.MANIFEST).write_text(""),
    "manifest-binary": lambda p: (p / b.MANIFEST).write_bytes(b"\xff\xfe\x00garbage"),
    "manifest-a-list": lambda p: (p / b.MANIFEST).write_text("[1, 2]"),
    "format-version-2": edit_manifest(lambda m: m.update(format_version=2)),
    "other-format": edit_manifest(lambda m: m.update(format="something-else")),
    "no-files": edit_manifest(lambda m: m.pop("files")),
    "files-a-list": edit_manifest(files_as_list),
    "file-without-bytes": edit_manifest(no_bytes),
    "extras-not-names": edit_manifest(lambda m: m.update(extras=["../../etc/passwd"])),
    "shapes-lie": edit_manifest(lambda m: m.update(shapes={"customers": 1})),
    "consistent-garbage-index": consistent(lambda p: (p / b.INDEX).write_bytes(b"\x00" * 64)),
    "consistent-garbage-customers": consistent(
        lambda p: (p / b.CUSTOMERS).write_bytes(b"PAR1 not parquet")
    ),
    "consistent-factors-of-other-width": consistent(rewrite_factors),
    "consistent-products-without-category": consistent(
        rewrite_products(lambda f: f.drop("category"))
    ),
    "consistent-products-without-popularity": consistent(
        rewrite_products(lambda f: f.drop("popularity"))
    ),
    "consistent-products-renamed-id": consistent(
        rewrite_products(lambda f: f.rename({"product_id": "id"}))
    ),
    "consistent-products-one-row-short": consistent(rewrite_products(lambda f: f.head(-1))),
}


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("damaged")


@pytest.fixture(scope="module")
def running(
    home: Path, tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> Iterator[Running]:
    model_dir = home / "models"
    add_copy(model_dir, trained(tmp_path_factory, "exact"), VERSION, publish=True)
    offers = home / "offers.yaml"
    shutil.copy(ROOT / "examples" / "offers.yaml", offers)
    server = start_server(
        model_dir, embedded_redis.url, new_namespace(), auth_tokens=TOKENS, offers=offers
    )
    yield server
    server.stop(grace=1.0)


@pytest.fixture(scope="module")
def channel(running: Running) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        yield ch


def still_serving(channel: grpc.Channel, version: str) -> None:
    reply = pb_grpc.RecommenderStub(channel).RecommendProducts(
        pb.RecommendProductsRequest(customer_id="C0000001", limit=5), metadata=AUTH, timeout=10
    )
    assert reply.model_version == version and len(reply.items) == 5


@pytest.mark.parametrize("damage", DAMAGE.values(), ids=DAMAGE.keys())
def test_a_damaged_bundle_is_refused_and_the_old_one_keeps_serving(
    running: Running,
    channel: grpc.Channel,
    tmp_path_factory: pytest.TempPathFactory,
    damage: Damage,
    request: pytest.FixtureRequest,
) -> None:
    model_dir = running.store.model_dir
    version = "20260102T000000Z-" + request.node.callspec.id.lower().replace(".", "-")[:60]
    add_copy(model_dir, trained(tmp_path_factory, "other"), version)
    damage(model_dir / version)
    current = (model_dir / b.CURRENT).read_bytes()
    admin = pb_grpc.AdminStub(channel)
    with pytest.raises(grpc.RpcError) as info:
        admin.ReloadModel(pb.ReloadModelRequest(version=version), metadata=AUTH, timeout=30)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
    assert version in (info.value.details() or "")
    assert (model_dir / b.CURRENT).read_bytes() == current
    still_serving(channel, VERSION)

    # Named in CURRENT by hand (not through publish): a reload refuses it just the same.
    (model_dir / b.CURRENT).write_text(version + "\n")
    try:
        with pytest.raises(grpc.RpcError) as info:
            admin.ReloadModel(pb.ReloadModelRequest(), metadata=AUTH, timeout=30)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
        still_serving(channel, VERSION)
    finally:
        (model_dir / b.CURRENT).write_bytes(current)


def replace_by_directory(path: Path) -> None:
    path.unlink()
    path.mkdir()


OFFER_DAMAGE: dict[str, Callable[[Path], object]] = {
    "empty": lambda p: p.write_text(""),
    "not-yaml": lambda p: p.write_text("offers: [unclosed\n  - {"),
    "binary": lambda p: p.write_bytes(b"\x00\xff\xfe" * 100),
    "unknown-kind": lambda p: p.write_text(p.read_text().replace("kind: gift", "kind: voucher")),
    "huge-value": lambda p: p.write_text(p.read_text().replace("value: 15", "value: 1e308")),
    "duplicate-id": lambda p: p.write_text(
        p.read_text().replace("offer_id: vip-gift", "offer_id: welcome-10")
    ),
    "a-list": lambda p: p.write_text("- 1\n- 2\n"),
    "deleted": lambda p: p.unlink(),
    "a-directory": lambda p: replace_by_directory(p),
    "yaml-bomb": lambda p: p.write_text(
        "a: &a [x, x, x, x, x, x, x, x, x]\n"
        + "".join(
            f"{c}: &{c} [*{p_}, *{p_}, *{p_}, *{p_}, *{p_}, *{p_}]\n"
            for p_, c in zip("abcdefgh", "bcdefghi", strict=True)
        )
        + "offers: *i\n"
    ),
}


@pytest.mark.parametrize("damage", OFFER_DAMAGE.values(), ids=OFFER_DAMAGE.keys())
def test_a_damaged_offer_catalog_is_refused_and_the_old_one_keeps_serving(
    running: Running, channel: grpc.Channel, home: Path, damage: Callable[[Path], object]
) -> None:
    offers = home / "offers.yaml"
    good = (ROOT / "examples" / "offers.yaml").read_text()
    admin = pb_grpc.AdminStub(channel)
    before = admin.ReloadOffers(pb.ReloadOffersRequest(), metadata=AUTH, timeout=10)
    damage(offers)
    try:
        with pytest.raises(grpc.RpcError) as info:
            admin.ReloadOffers(pb.ReloadOffersRequest(), metadata=AUTH, timeout=30)
        assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION, info.value.details()
        assert str(offers) in (info.value.details() or "")
        reply = pb_grpc.RecommenderStub(channel).RecommendOffers(
            pb.RecommendOffersRequest(customer_id="C0000001", limit=3), metadata=AUTH, timeout=10
        )
        assert reply.catalog_version == before.catalog_version and reply.offers
    finally:
        if offers.is_dir():
            offers.rmdir()
        offers.write_text(good)
