"""What every benchmark report carries: the machine, the date, figures formatted alike, and
the results files."""

from __future__ import annotations

import json
import math
import os
import platform
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np


def machine() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, Python {platform.python_version()}"


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def write_results(out: Path, report: str, command: str, data: dict[str, Any]) -> None:
    """Print the report; keep it as out/results.md and the figures as out/results.json."""
    print()
    print(report)
    (out / "results.md").write_text(report + "\n")
    header = {"date": today(), "machine": machine(), "command": command}
    (out / "results.json").write_text(json.dumps(header | data, indent=1))


def median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else math.nan


def pct(values: np.ndarray, q: float) -> float:
    """The q-th percentile (numpy's linear interpolation); NaN when there is none."""
    return float(np.percentile(values, q)) if len(values) else math.nan


def fmt(x: float, digits: int = 2) -> str:
    return "n/a" if x != x else f"{x:.{digits}f}"


def ints(text: str) -> list[int]:
    """An argparse type: "1,8,32" -> [1, 8, 32]."""
    return [int(x) for x in text.split(",") if x.strip()]
