"""Spark for the tests: a small world to train on and a standalone cluster on loopback.

The standalone master and workers are the classes shipped in the pyspark package, started
with its ``bin/spark-class`` on free 127.0.0.1 ports, each in a process group of its own so
that teardown kills them and the executors they launched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from serving_fixtures import free_port

from training import synth

# A few hundred KB of Parquet: enough for ALS to beat chance, small enough for local[2].
SMALL_WORLD = synth.SynthConfig(customers=600, products=120, seed=11)
# Small and few: the tests check the plumbing, the benchmarks check the quality.
FAST = ["--factors", "8", "--iterations", "3", "--baselines", "popularity", "--no-clv-check"]


def spark_class() -> str:
    import pyspark  # not at import: pyspark warns about pandas as it loads

    return str(Path(pyspark.__file__).parent / "bin" / "spark-class")


@pytest.fixture(scope="session")
def small_world(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return synth.write_world(synth.generate(SMALL_WORLD), tmp_path_factory.mktemp("spark-world"))


@dataclass
class Standalone:
    """A Spark standalone master and ``workers`` workers (one core each) on 127.0.0.1."""

    work_dir: Path
    workers: int = 2
    port: int = field(default_factory=free_port)
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"spark://127.0.0.1:{self.port}"

    def _start(self, name: str, *args: str) -> None:
        env = {
            **os.environ,
            "SPARK_LOCAL_IP": "127.0.0.1",
            "PYSPARK_PYTHON": sys.executable,
            "SPARK_LOG_DIR": str(self.work_dir),
        }
        log = (self.work_dir / f"{name}.log").open("wb")
        self.processes.append(
            subprocess.Popen(
                [spark_class(), *args],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: killpg reaches its executors too
            )
        )
        log.close()

    def start(self, timeout: float = 120.0) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self._start(
            "master",
            "org.apache.spark.deploy.master.Master",
            "--host", "127.0.0.1",
            "--port", str(self.port),
            "--webui-port", str(free_port()),
        )  # fmt: skip
        for i in range(self.workers):
            self._start(
                f"worker-{i}",
                "org.apache.spark.deploy.worker.Worker",
                self.url,
                "--host", "127.0.0.1",
                "--port", str(free_port()),
                "--webui-port", str(free_port()),
                "--cores", "1",
                "--memory", "1g",
                "--work-dir", str(self.work_dir / f"work-{i}"),
            )  # fmt: skip
        deadline = time.monotonic() + timeout
        while self.registered() < self.workers:
            dead = [p.args for p in self.processes if p.poll() is not None]
            assert not dead, f"Spark daemons exited: {dead}\n{self.logs()}"
            assert time.monotonic() < deadline, f"workers never registered\n{self.logs()}"
            time.sleep(0.5)

    def registered(self) -> int:
        log = self.work_dir / "master.log"
        return log.read_text().count("Registering worker") if log.exists() else 0

    def logs(self) -> str:
        return "\n".join(p.read_text()[-1500:] for p in sorted(self.work_dir.glob("*.log")))

    def stop(self) -> None:
        for p in reversed(self.processes):  # workers first: they stop their executors
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(self.processes):
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(timeout=10)
        for p in self.processes:  # anything left in their groups (executors)
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def standalone(tmp_path: Path) -> Iterator[Standalone]:
    cluster = Standalone(tmp_path / "spark-standalone")
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
