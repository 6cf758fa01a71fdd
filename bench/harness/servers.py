"""What the benchmarks serve and how: bundles (built once, then reused), `recsvc serve` in a
subprocess, and an embedded Redis started fresh for a run."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.harness.host import cpu_seconds, recsvc_bin, run_timed
from feature_store.connection import connect
from feature_store.embedded import SERVER_PID, EmbeddedRedis, start_embedded
from formats.bundle import BundleError, read_manifest, resolve

TOKEN = "bench-serve-token"  # the recommend-scope token every Server accepts
EVENTS_TOKEN = "bench-events-token"  # events+recommend, for a server given a tokens file
RECOMMEND = "/recsvc.v1.Recommender/RecommendProducts"
HEALTH = "/grpc.health.v1.Health/Check"
# The embedded feature store, where a served recsvc has one, stays out of the bundles' dirs.
SERVE_REDIS_DIR = Path("var/bench/serve/redis")
SERVE_WORKDIR = Path("var/bench/serve")  # the serving benchmarks' bundles and logs


# -- bundles ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """One bundle to serve: where it is and what its manifest says."""

    label: str  # "100k", "1M"
    model_dir: Path
    bundle: Path
    manifest: dict[str, Any]

    @property
    def products(self) -> int:
        return int(self.manifest["counts"]["products"])

    @property
    def customers(self) -> int:
        return int(self.manifest["counts"]["customers"])

    @property
    def index(self) -> str:
        index = self.manifest["index"]
        ef = index.get("ef_search") or index.get("params", {}).get("ef_search")
        beam = f", efSearch {ef}" if index["kind"] == "hnsw" and ef else ""
        return f"{index['kind']}{beam}, recall@{index['recall_k']} {index['recall']:.3f}"


def published(label: str, model_dir: Path) -> Catalog | None:
    """The published bundle of ``model_dir`` (manifest checked; checksums at server start)."""
    try:
        path = resolve(model_dir)
        return Catalog(label, model_dir, path, read_manifest(path))
    except BundleError:
        return None


def synth_once(world: Path, synth_args: list[str], note: str) -> Path:
    """`recsvc data synth SYNTH_ARGS --out WORLD` unless the world is there already."""
    if not (world / "interactions.parquet").exists():
        print(f"{note} in {world} (once) ...", flush=True)
        t = run_timed([recsvc_bin(), "data", "synth", *synth_args, "--out", str(world)])
        print(f"  synth: {t.seconds:.0f} s, peak {t.peak_rss_gib:.1f} GiB", flush=True)
    return world


def world_files(world: Path, customers: bool = False) -> list[str]:
    """The --interactions and --catalog options (and --customers, when asked and there is
    such a file) of the recsvc commands for a world's files, Parquet or CSV."""
    names = ["interactions", "catalog", *(["customers"] if customers else [])]
    options = []
    for name in names:
        found = [world / f"{name}.{ext}" for ext in ("parquet", "csv")]
        path = next((p for p in found if p.exists()), None)
        if path is None and name != "customers":
            raise SystemExit(f"no {name}.parquet or {name}.csv in {world}")
        if path is not None:
            options += [f"--{name}", str(path)]
    return options


def train_bundle(
    label: str, model_dir: Path, world: Path, train_args: list[str], note: str
) -> Catalog:
    """`recsvc train` on the world into ``model_dir``; callers check `published` first."""
    print(f"{note} in {model_dir} (once) ...", flush=True)
    t = run_timed(
        [
            recsvc_bin(),
            "train",
            *world_files(world),
            *train_args,
            *("--model-dir", str(model_dir), "--quiet"),
        ]
    )
    print(f"  train: {t.seconds:.0f} s, peak {t.peak_rss_gib:.1f} GiB", flush=True)
    catalog = published(label, model_dir)
    if catalog is None:
        raise SystemExit(f"recsvc train did not publish a bundle in {model_dir}")
    return catalog


def million_catalog(workdir: Path = SERVE_WORKDIR, products: int = 1_000_000) -> Catalog:
    """A bundle over ``products`` products (a synthetic world of 0.3 customers per product,
    10 events each), trained once and cached under ``workdir`` (for 1M products, more than 25
    minutes on a busy 2-core host). Delete its models directory to retrain."""
    tag = "1m" if products == 1_000_000 else f"{products}"
    models = workdir / f"models-{tag}"
    label = "1M" if products == 1_000_000 else f"{products:,}"
    if (catalog := published(label, models)) is not None:
        return catalog
    world = synth_once(
        million_world(workdir, products),
        [
            *("--customers", str(max(products * 3 // 10, 1000)), "--products", str(products)),
            *("--events-per-customer", "10", "--seed", "2"),
        ],
        note=f"building the {label}-product world",
    )
    return train_bundle(
        label,
        models,
        world,
        ["--eval-users", "2000", "--baselines", "popularity"],
        note=f"training the {label}-product bundle",
    )


def million_world(workdir: Path = SERVE_WORKDIR, products: int = 1_000_000) -> Path:
    """Where million_catalog's synthetic world (interactions, catalog, customers) lives."""
    return workdir / f"world-{'1m' if products == 1_000_000 else products}"


# -- recsvc serve -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`recsvc serve` in its own session; stopped with SIGTERM (SIGKILL to its group if stuck).

    ``env`` adds to this process's environment (e.g. REDIS_URL, RECSVC_OFFERS), under the
    settings every benchmark server has: one BLAS thread, TOKEN, ``redis_dir`` (the embedded
    feature store's directory, SERVE_REDIS_DIR unless given)."""

    def __init__(
        self,
        catalog: Catalog,
        workers: int,
        log: Path,
        env: dict[str, str] | None = None,
        redis_dir: Path = SERVE_REDIS_DIR,
    ) -> None:
        self.port = free_port()
        self.metrics_port = free_port()
        self.http_port = free_port()
        self.workers = workers
        self.log = log
        self.command = [
            recsvc_bin(),
            "serve",
            "--model-dir",
            str(catalog.model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--metrics-port",
            str(self.metrics_port),
            "--http-port",
            str(self.http_port),
            "--workers",
            str(workers),
        ]
        self.redis_dir = redis_dir
        full_env = {
            **os.environ,
            **(env or {}),
            "OPENBLAS_NUM_THREADS": "1",
            "RECSVC_AUTH_TOKENS": f"{TOKEN}=recommend",
            "RECSVC_REDIS_DIR": str(redis_dir),
        }
        log.parent.mkdir(parents=True, exist_ok=True)
        self._stream = log.open("w")
        self.process = subprocess.Popen(
            self.command,
            stdout=self._stream,
            stderr=subprocess.STDOUT,  # one JSON line per request: a file, never a pipe
            env=full_env,
            start_new_session=True,
        )

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def http_target(self) -> str:
        return f"127.0.0.1:{self.http_port}"

    def wait_ready(self, timeout: float = 600.0) -> float:
        """Seconds until every worker logged that it serves."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            if self.process.poll() is not None:
                raise SystemExit(
                    f"recsvc serve exited with {self.process.returncode}:\n{self.tail()}"
                )
            if self.log.read_text(errors="replace").count('"msg":"serving model') >= self.workers:
                return time.perf_counter() - start
            time.sleep(0.2)
        raise SystemExit(f"recsvc serve not ready after {timeout:.0f} s:\n{self.tail()}")

    def rss_gib(self) -> list[float]:
        out = []
        for p in self.workers_pids():
            try:
                if "redis" not in " ".join(p.cmdline()):
                    out.append(p.memory_info().rss / 2**30)
            except psutil.Error:
                continue
        return out

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def redis_server(self) -> psutil.Process | None:
        """The embedded redis-server this server uses (its keeper runs it outside the
        server's process tree), or None when it has none running."""
        try:
            return psutil.Process(int((self.redis_dir / SERVER_PID).read_text().strip()))
        except (OSError, ValueError, psutil.Error):
            return None

    def workers_pids(self) -> list[psutil.Process]:
        procs = self.processes()
        return procs if self.workers == 1 else procs[1:]

    def connections(self) -> str:
        counts = []
        for p in self.workers_pids():
            try:
                if "redis" in " ".join(p.cmdline()):
                    continue
                conns = p.net_connections(kind="tcp")
            except psutil.Error:
                continue
            n = sum(
                1
                for c in conns
                if c.laddr and c.laddr.port == self.port and c.status == psutil.CONN_ESTABLISHED
            )
            counts.append(n)
        return "+".join(str(n) for n in counts)

    def metrics(self) -> dict[str, tuple[float, float]]:
        """(sum, count) of recsvc_rpc_duration_seconds per method, OK answers."""
        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            text = r.read().decode()
        out: dict[str, list[float]] = {}
        for family in text_string_to_metric_families(text):
            if family.name != "recsvc_rpc_duration_seconds":
                continue
            for s in family.samples:
                if s.labels.get("code") != "OK":
                    continue
                entry = out.setdefault(s.labels["method"], [0.0, 0.0])
                if s.name.endswith("_sum"):
                    entry[0] += s.value
                elif s.name.endswith("_count"):
                    entry[1] += s.value
        return {k: (v[0], v[1]) for k, v in out.items()}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self._stream.close()


def check_reply(raw: bytes, json: bool = False) -> None:
    """A RecommendProducts answer (serialized, or proto3 JSON) must carry items and a model
    version."""
    from google.protobuf import json_format

    from recsvc.v1 import recommender_pb2 as pb

    if json:
        reply = json_format.Parse(raw, pb.RecommendProductsResponse())
    else:
        reply = pb.RecommendProductsResponse.FromString(raw)
    if not reply.items or not reply.model_version:
        raise SystemExit(f"unexpected RecommendProducts answer: {reply}")


# -- Redis -------------------------------------------------------------------------------------


class Redis:
    """The embedded Redis, started fresh for the run, and what we watch of it."""

    def __init__(self, data_dir: Path, save: str | None = None, namespace: str = "bench") -> None:
        shutil.rmtree(data_dir, ignore_errors=True)
        self.namespace = namespace  # of every key the benchmark writes
        self.embedded: EmbeddedRedis = start_embedded(data_dir)
        self.url = self.embedded.url
        self.socket = self.url.removeprefix("unix://")
        self.client = connect(self.url, timeout_s=60.0)
        if save is not None:  # RDB snapshot schedule, e.g. "" = none (the AOF only)
            self.client.config_set("save", save)
        server = self.client.info("server")
        self.version = str(server["redis_version"])
        self.process = psutil.Process(int(server["process_id"]))
        persistence = self.client.info("persistence")
        config = self.client.config_get("*")
        self.config = (
            f"redis-server {self.version}, appendonly {config.get('appendonly')}, "
            f"appendfsync {config.get('appendfsync')}, save '{config.get('save')}', "
            f"aof_enabled {persistence.get('aof_enabled')}"
        )

    def cpu(self) -> float:
        """User+system CPU seconds of redis-server and its children (BGSAVE, AOF rewrites),
        finished or running."""
        t = self.process.cpu_times()
        running = cpu_seconds(self.process.children())
        return t.user + t.system + t.children_user + t.children_system + running

    def forks(self) -> int:
        return int(self.client.info("stats")["total_forks"])

    def script_seconds(self) -> float:
        """Time Redis spent running Lua scripts (EVAL/EVALSHA, their commands included)."""
        stats = self.client.info("commandstats")
        usec = sum(float(stats.get(f"cmdstat_{c}", {}).get("usec", 0)) for c in ("evalsha", "eval"))
        return usec / 1e6

    def quiesce(self, timeout: float = 600.0) -> float:
        """Wait until no snapshot or AOF rewrite runs (started by the previous measurement)."""
        start = time.perf_counter()
        while time.perf_counter() - start < timeout:
            p = self.client.info("persistence")
            busy = ("rdb_bgsave_in_progress", "aof_rewrite_in_progress", "aof_rewrite_scheduled")
            if not any(int(p.get(k, 0)) for k in busy):
                return time.perf_counter() - start
            time.sleep(0.2)
        raise SystemExit(f"Redis still saving after {timeout:.0f} s")

    def used_gib(self) -> float:
        return int(self.client.info("memory")["used_memory"]) / 2**30

    def close(self) -> None:
        self.client.flushall()  # so the shutdown save is instant
        self.client.close()
        self.embedded.close()
