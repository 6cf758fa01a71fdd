"""The model bundle: one directory per version, written atomically, verified on load.

This module is the only reader and writer of the format documented in docs/bundle-format.md.
Layout of ``MODEL_DIR``::

    MODEL_DIR/
      CURRENT              name of the published version (replaced atomically)
      HISTORY              published versions, oldest first (``rollback`` pops the last)
      <version>/
        manifest.json      format version, counts, parameters, metrics, file checksums
        customers.parquet  customer_id per row of user_factors
        products.parquet   catalog snapshot per row of item_factors, with popularity
        factors.npz        user_factors, item_factors (float32; loaded without pickle)
        interactions.npz   the training confidence matrix, CSR (customers x products)
        items.faiss        inner-product index over item vectors (customers and similar products)
        <extra>.npz        optional named groups of arrays (listed in the manifest's "extras")
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.sparse import csr_matrix

from formats.errors import RecsvcError
from formats.files import fsync_dir, write_atomic

FORMAT = "recsvc-model-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
CUSTOMERS = "customers.parquet"
PRODUCTS = "products.parquet"
FACTORS = "factors.npz"
INTERACTIONS = "interactions.npz"
INDEX = "items.faiss"
CURRENT = "CURRENT"
HISTORY = "HISTORY"
DATA_FILES = (CUSTOMERS, PRODUCTS, FACTORS, INTERACTIONS, INDEX)
# Columns of products.parquet every reader relies on, with the types they must cast to.
PRODUCT_COLUMNS: dict[str, type[pl.DataType]] = {
    "product_id": pl.Utf8,
    "title": pl.Utf8,
    "category": pl.Utf8,
    "price": pl.Float64,
    "in_stock": pl.Boolean,
    "popularity": pl.Float32,
}
EXTRA_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
MAX_VERSION_LENGTH = 128
VERSION_NAME = re.compile(rf"[A-Za-z0-9_-][A-Za-z0-9._-]{{0,{MAX_VERSION_LENGTH - 1}}}")


class BundleError(RecsvcError):
    """A bundle that is missing, damaged or of another format version."""


@dataclass(frozen=True)
class BundleContents:
    """Everything a bundle holds, in memory."""

    manifest: dict[str, Any]
    customer_ids: pl.Series
    products: pl.DataFrame  # product_id, title, category, price, in_stock, popularity, ...
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_items: csr_matrix  # what each customer had in training (for seen-filtering, fold-in)
    index: Any  # faiss.Index over item_factors, inner product
    # Optional models beside the factors, by name: each a group of plain arrays (no pickle),
    # stored as <name>.npz, checksummed like every file; readers ignore names they don't use.
    extras: dict[str, dict[str, np.ndarray]] = field(default_factory=dict, kw_only=True)


@dataclass(frozen=True)
class Bundle(BundleContents):
    path: Path

    @property
    def version(self) -> str:
        return str(self.manifest["version"])


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def new_version(fingerprint: str, model_dir: Path | None = None) -> str:
    """Sortable and unique enough: UTC time to the second plus the input fingerprint (and
    ``.1``, ``.2``... when ``model_dir`` already has that name: two runs in one second)."""
    version = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ") + "-" + fingerprint[:8]
    taken, n = version, 0
    while model_dir is not None and (Path(model_dir) / taken).exists():
        n += 1
        taken = f"{version}.{n}"
    return taken


def write_bundle(model_dir: Path, contents: BundleContents, version: str) -> Path:
    """Write a bundle to a temporary directory, fsync it and rename it into place.

    Does not publish it: see :func:`publish`.
    """
    import faiss

    model_dir.mkdir(parents=True, exist_ok=True)
    final = model_dir / version
    if final.exists():
        raise BundleError(f"{final} already exists")
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{version}-", dir=model_dir))
    os.chmod(tmp, 0o755)  # mkdtemp makes it private; a serving user must read it
    try:
        pl.DataFrame({"customer_id": contents.customer_ids}).write_parquet(tmp / CUSTOMERS)
        contents.products.write_parquet(tmp / PRODUCTS)
        np.savez(
            tmp / FACTORS,
            user_factors=np.ascontiguousarray(contents.user_factors, dtype=np.float32),
            item_factors=np.ascontiguousarray(contents.item_factors, dtype=np.float32),
        )
        m = contents.user_items
        np.savez(
            tmp / INTERACTIONS,
            indptr=m.indptr.astype(np.int64),
            indices=m.indices.astype(np.int32),
            data=m.data.astype(np.float32),
            shape=np.asarray(m.shape, dtype=np.int64),
        )
        faiss.write_index(contents.index, str(tmp / INDEX))
        extra_files = []
        for name, arrays in sorted(contents.extras.items()):
            if not EXTRA_NAME.fullmatch(name):
                raise BundleError(f"extra {name!r}: use lowercase letters, digits and '_'")
            named: dict[str, Any] = {k: np.asarray(v) for k, v in arrays.items()}
            np.savez(tmp / f"{name}.npz", **named)
            extra_files.append(f"{name}.npz")
        manifest = dict(contents.manifest)
        manifest.update(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            version=version,
            shapes={
                "customers": len(contents.customer_ids),
                "products": contents.products.height,
                "user_factors": list(contents.user_factors.shape),
                "item_factors": list(contents.item_factors.shape),
            },
            files={
                name: {"sha256": sha256_file(tmp / name), "bytes": (tmp / name).stat().st_size}
                for name in (*DATA_FILES, *extra_files)
            },
            extras=sorted(contents.extras),
        )
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
        for name in (*DATA_FILES, *extra_files, MANIFEST):
            with (tmp / name).open("rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        os.rename(tmp, final)
        fsync_dir(model_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def read_manifest(path: Path) -> dict[str, Any]:
    file = path / MANIFEST
    if not file.is_file():
        raise BundleError(f"{path}: not a model bundle (no {MANIFEST})")
    try:
        manifest: dict[str, Any] = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{file}: damaged manifest: {exc}") from exc
    if not isinstance(manifest, dict):
        raise BundleError(f"{file}: damaged manifest: not a JSON object")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{file}: not a {FORMAT} manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(
            f"{path}: bundle format version {manifest.get('format_version')} is not supported "
            f"(this recsvc reads version {FORMAT_VERSION}); retrain or upgrade recsvc"
        )
    missing = [k for k in ("files", "shapes") if not isinstance(manifest.get(k), dict)]
    if missing:
        raise BundleError(f"{file}: damaged manifest: no {', '.join(missing)}")
    try:
        _extra_files(manifest)
    except BundleError as exc:
        raise BundleError(f"{file}: {exc}") from None
    return manifest


def _extra_files(manifest: dict[str, Any]) -> list[str]:
    extras = manifest.get("extras", [])
    if not isinstance(extras, list) or not all(
        isinstance(e, str) and EXTRA_NAME.fullmatch(e) for e in extras
    ):
        raise BundleError("damaged manifest: extras is not a list of names")
    return [f"{e}.npz" for e in extras]


def verify_files(path: Path, manifest: dict[str, Any]) -> None:
    for name in (*DATA_FILES, *_extra_files(manifest)):
        expected = manifest["files"].get(name)
        file = path / name
        if expected is None or not file.is_file():
            raise BundleError(f"{path}: missing {name}")
        if not isinstance(expected, dict) or not {"sha256", "bytes"} <= expected.keys():
            raise BundleError(f"{path}: damaged manifest: no checksum and size for {name}")
        if file.stat().st_size != expected["bytes"] or sha256_file(file) != expected["sha256"]:
            raise BundleError(f"{path}: {name} is damaged (checksum mismatch); refusing to load")


def load_bundle(path: Path) -> Bundle:
    """Load and verify a bundle: format version, checksums, then shapes."""
    import faiss

    path = Path(path)
    manifest = read_manifest(path)
    verify_files(path, manifest)
    shapes = manifest["shapes"]
    try:
        with np.load(path / FACTORS, allow_pickle=False) as npz:
            user_factors = npz["user_factors"]
            item_factors = npz["item_factors"]
        with np.load(path / INTERACTIONS, allow_pickle=False) as npz:
            user_items = csr_matrix(
                (npz["data"], npz["indices"], npz["indptr"]), shape=tuple(npz["shape"])
            )
        customers = pl.read_parquet(path / CUSTOMERS)["customer_id"]
        products = pl.read_parquet(path / PRODUCTS)
        lacking = [c for c in PRODUCT_COLUMNS if c not in products.columns]
        if lacking:  # checksums only prove the files are those written, not that they fit
            raise BundleError(f"{PRODUCTS} has no column {', '.join(lacking)}")
        products.select(pl.col(c).cast(t, strict=True) for c, t in PRODUCT_COLUMNS.items())
        index = faiss.read_index(str(path / INDEX))
        extras = {}
        for name in manifest.get("extras", []):
            with np.load(path / f"{name}.npz", allow_pickle=False) as npz:
                extras[name] = {k: npz[k] for k in npz.files}
    except Exception as exc:  # any decoder error means the same thing here
        raise BundleError(f"{path}: cannot read bundle files: {exc}") from exc
    problems = []
    if list(user_factors.shape) != shapes.get("user_factors") or len(customers) != shapes.get(
        "customers"
    ):
        problems.append("user factors do not match the customer id map")
    if list(item_factors.shape) != shapes.get("item_factors") or products.height != shapes.get(
        "products"
    ):
        problems.append("item factors do not match the product table")
    if user_items.shape != (user_factors.shape[0], item_factors.shape[0]):
        problems.append("interaction matrix does not match the factors")
    if index.ntotal != item_factors.shape[0] or index.d != item_factors.shape[1]:
        problems.append(
            f"{INDEX} holds {index.ntotal}x{index.d} vectors, expected "
            f"{item_factors.shape[0]}x{item_factors.shape[1]}"
        )
    if len(customers) != user_factors.shape[0] or products.height != item_factors.shape[0]:
        problems.append("id maps do not match the factor rows")
    if problems:
        raise BundleError(f"{path}: inconsistent bundle: {'; '.join(problems)}")
    return Bundle(
        manifest=manifest,
        customer_ids=customers,
        products=products,
        user_factors=user_factors,
        item_factors=item_factors,
        user_items=user_items,
        index=index,
        extras=extras,
        path=path,
    )


def current_version(model_dir: Path) -> str | None:
    file = Path(model_dir) / CURRENT
    if not file.is_file():
        return None
    return file.read_text().strip() or None


def history(model_dir: Path) -> list[str]:
    file = Path(model_dir) / HISTORY
    return file.read_text().split() if file.is_file() else []


def version_problem(version: str) -> str | None:
    """Why ``version`` cannot name a bundle directory of MODEL_DIR, or None. (A path, "..",
    or a trailing "/" would reach outside MODEL_DIR or name one bundle twice.)"""
    if VERSION_NAME.fullmatch(version):
        return None
    shown = version if len(version) <= 40 else version[:40] + "..."
    return (
        f"{shown!r} is not a model version: versions are bundle names in the model directory "
        f"(letters, digits, '.', '_' and '-', at most {MAX_VERSION_LENGTH} characters, not "
        "starting with '.'); `recsvc models list` shows them"
    )


def resolve(model_dir: Path, version: str | None = None) -> Path:
    """The directory of ``version`` (default: the published one)."""
    version = version or current_version(model_dir)
    if version is None:
        raise BundleError(f"{model_dir}: no published model (train one with `recsvc train`)")
    problem = version_problem(version)
    if problem:
        raise BundleError(problem)
    path = Path(model_dir) / version
    if not path.is_dir():
        raise BundleError(f"{model_dir}: no bundle named {version!r}")
    return path


def publish(model_dir: Path, version: str) -> Bundle:
    """Verify a bundle fully, then point CURRENT at it. A bad bundle never becomes current."""
    bundle = load_bundle(resolve(model_dir, version))
    past = [v for v in history(model_dir) if v != version] + [version]
    write_atomic(Path(model_dir) / HISTORY, "\n".join(past) + "\n")
    write_atomic(Path(model_dir) / CURRENT, version + "\n")
    return bundle


def rollback(model_dir: Path) -> str:
    """Re-publish the previously published version and forget the current one."""
    past = history(model_dir)
    current = current_version(model_dir)
    if current in past:
        past = past[: past.index(current)]
    for candidate in reversed(past):
        try:
            load_bundle(Path(model_dir) / candidate)
        except BundleError:
            continue
        write_atomic(Path(model_dir) / HISTORY, "\n".join(past[: past.index(candidate) + 1]) + "\n")
        write_atomic(Path(model_dir) / CURRENT, candidate + "\n")
        return candidate
    raise BundleError(f"{model_dir}: no earlier published version to roll back to")


def list_versions(model_dir: Path) -> list[dict[str, Any]]:
    """Manifests of every bundle in ``model_dir``, oldest first (unreadable ones flagged)."""
    rows: list[dict[str, Any]] = []
    root = Path(model_dir)
    if not root.is_dir():
        return rows
    for path in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        try:
            rows.append(read_manifest(path))
        except BundleError as exc:
            rows.append({"version": path.name, "error": str(exc)})
    return rows
