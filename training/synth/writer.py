"""`write_world`: a world as Parquet or CSV files."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from training.synth.config import World


def write_world(
    world: World, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet"
) -> dict[str, Path]:
    """Write interactions, catalog and customers as ``<name>.<fmt>`` into ``out_dir``."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"unknown format {fmt!r}: expected 'parquet' or 'csv'")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in (
        ("interactions", world.interactions),
        ("catalog", world.catalog),
        ("customers", world.customers),
    ):
        path = out_dir / f"{name}.{fmt}"
        if fmt == "parquet":
            frame.write_parquet(path)
        else:
            frame.write_csv(path)
        paths[name] = path
    return paths
