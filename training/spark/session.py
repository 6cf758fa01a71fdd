"""A Spark session for training: where it runs (--spark-master), its settings, and a clean stop.

Local mode (``local[N]``) runs the executors inside the driver's JVM on this machine; a
standalone master (``spark://host:7077``), YARN (``yarn``) or Kubernetes (``k8s://...``) runs
them on the cluster. The defaults below suit local mode and small clusters; every Spark
setting can be given with ``--spark-conf KEY=VALUE`` and wins over them.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import psutil

from formats.errors import RecsvcError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

MASTER = re.compile(r"local(\[(\*|\d+)(,\d+)?\])?|spark://.+|yarn|k8s://.+")
# Local mode: a share of this machine's memory for the one JVM (driver and executors).
LOCAL_MEMORY_SHARE = 0.4
# The driver logs errors only, to stderr (Spark's default prints warnings and banners).
LOG4J2 = """\
rootLogger.level = error
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = spark %p %c{1}: %m%n
"""
# pyspark warns about the pandas version at import and on Arrow transfers that use no pandas.
warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")


class SparkError(RecsvcError):
    """Spark could not start or run: the message says what to check."""


_JAVA = "spark.driver.extraJavaOptions"


def _loopback(master: str) -> bool:
    host = master.removeprefix("spark://").split(":")[0]
    return master.startswith("local") or host in ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class SparkSettings:
    master: str = "local[*]"
    conf: Mapping[str, str] = field(default_factory=dict)  # --spark-conf, wins over defaults
    app_name: str = "recsvc-train"
    progress: bool = True  # Spark's console progress bar (stderr)

    def check(self) -> SparkSettings:
        if not MASTER.fullmatch(self.master):
            raise SparkError(
                f"--spark-master {self.master!r}: expected local[*], local[N], "
                "spark://HOST:PORT, yarn or k8s://URL"
            )
        return self

    def resolved(self) -> dict[str, str]:
        """Every setting the session starts with: our defaults, then ``conf``."""
        values = {
            "spark.ui.enabled": "false",
            "spark.ui.showConsoleProgress": "true" if self.progress else "false",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            # The trainer collects the factors on purpose (the bundle holds them all).
            "spark.driver.maxResultSize": "0",
        }
        if self.master.startswith("local"):
            gib = max(1, int(psutil.virtual_memory().total * LOCAL_MEMORY_SHARE / 2**30))
            cores = self.master.removeprefix("local").strip("[]").split(",")[0]
            parallelism = os.cpu_count() or 1 if cores in ("", "*") else int(cores)
            values.update(
                {
                    "spark.driver.memory": f"{gib}g",
                    # 200 shuffle partitions (the default) is for clusters; here it's overhead.
                    "spark.sql.shuffle.partitions": str(parallelism),
                    "spark.default.parallelism": str(parallelism),
                }
            )
        logging_conf = Path(tempfile.gettempdir()) / "recsvc-spark-log4j2.properties"
        if not logging_conf.exists() or logging_conf.read_text() != LOG4J2:
            logging_conf.write_text(LOG4J2)
        java = f"-Dlog4j2.configurationFile=file:{logging_conf}"
        values[_JAVA] = " ".join(x for x in (java, self.conf.get(_JAVA)) if x)
        if _loopback(self.master):
            # Nothing of a local run (or a cluster on this host) listens beyond loopback.
            values.update(
                {"spark.driver.host": "127.0.0.1", "spark.driver.bindAddress": "127.0.0.1"}
            )
        values.update({k: v for k, v in self.conf.items() if k != _JAVA})  # merged above
        return values


def parse_conf(pairs: list[str]) -> dict[str, str]:
    """``["spark.executor.memory=4g", ...]`` -> dict; a pair without '=' is a SparkError."""
    conf = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip().startswith("spark."):
            raise SparkError(f"--spark-conf {pair!r}: expected spark.KEY=VALUE")
        conf[key.strip()] = value.strip()
    return conf


@contextmanager
def spark_session(settings: SparkSettings) -> Iterator[SparkSession]:
    """A started session for the duration; stopped (executors released) on exit."""
    settings = settings.check()
    try:
        from pyspark.sql import SparkSession
    except ImportError as exc:  # pragma: no cover - pyspark is a dependency
        raise SparkError(f"pyspark is not installed ({exc}); run `make install`") from None
    builder = SparkSession.builder.master(settings.master).appName(settings.app_name)
    for key, value in settings.resolved().items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j and pyspark raise several kinds; all mean "did not start"
        raise SparkError(
            f"cannot start Spark (master {settings.master}): {str(exc).strip().splitlines()[0]}; "
            "Spark needs Java 17 or newer (`java -version`) and, for a cluster, a reachable master"
        ) from None
    session.sparkContext.setLogLevel("ERROR")
    log.info(
        "Spark %s, master %s, default parallelism %d",
        session.version,
        session.sparkContext.master,
        session.sparkContext.defaultParallelism,
    )
    try:
        yield session
    finally:
        session.stop()
