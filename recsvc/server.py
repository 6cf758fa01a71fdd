"""`recsvc serve`: the gRPC server, one process per core sharing the port (SO_REUSEPORT).

Worker processes are forked before any gRPC object exists (gRPC is not fork-safe), each builds
its own server, model store and model watcher, and its own HTTP listener (recsvc.web) on the
HTTP port, shared the same way, over the same handlers and interceptors. Metrics of all
workers are aggregated by the parent through prometheus_client's multi-process mode.
"""

from __future__ import annotations

import fcntl
import logging
import multiprocessing
import os
import secrets
import shutil
import signal
import sys
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from feature_store.connection import SettingsError, redis_url
from feature_store.store import FeatureStore
from recsvc.config import ConfigError, ServeConfig
from recsvc.engine import EngineConfig
from recsvc.experiments import Experiments
from recsvc.health import StoreHealth
from recsvc.model_store import ModelStore
from recsvc.realtime import Realtime
from recsvc.reloads import ReloadSignals
from recsvc.services import SCOPES, SERVICES
from recsvc.trending import Trending, TrendingConfig

if TYPE_CHECKING:
    from recsvc.web.face import Web

if TYPE_CHECKING:
    from recsvc.offer_service import OfferService

log = logging.getLogger(__name__)


@dataclass
class Running:
    """A started server in this process (tests use it directly)."""

    server: grpc.Server
    port: int
    store: ModelStore
    health: health.HealthServicer
    realtime: Realtime
    store_health: StoreHealth
    web: Web | None = None  # the HTTP port, when RECSVC_HTTP_PORT is not 0
    experiments: Experiments | None = None
    signals: ReloadSignals | None = None

    @property
    def http_port(self) -> int:
        return self.web.port if self.web is not None else 0

    def stop(self, grace: float = 5.0) -> None:
        self.store_health.stop()
        if self.signals is not None:
            self.signals.stop()
        if self.experiments is not None:
            self.experiments.close()
        for name in ("", *SERVICES):
            self.health.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.web is not None:
            self.web.stop(grace)
        self.server.stop(grace).wait()
        self.store.close()
        if self.realtime.store is not None:
            self.realtime.store.close()


def engine_config(config: ServeConfig) -> EngineConfig:
    return EngineConfig(
        repeat_categories=config.repeat_categories,
        max_per_category=config.max_per_category,
        fold_in=config.fold_in,
        exploration_share=config.exploration_share,
        new_product_days=config.new_product_days,
    )


def feature_store(config: ServeConfig) -> FeatureStore | None:
    """The feature store client, or None when no Redis is configured (bundle-only serving)."""
    r = config.redis
    if r.url is None:
        return None
    # Trend counters are summed per worker and written once a second (derived data).
    return FeatureStore(
        r.url,
        r.cluster,
        r.namespace,
        r.read_timeout_ms / 1000,
        r.write_timeout_ms / 1000,
        trend_flush_s=1.0,
        wait_replicas=r.wait_replicas,
        wait_timeout_s=r.wait_timeout_ms / 1000,
    )


def start(config: ServeConfig, reuse_port: bool = False) -> Running:
    """Load the model, build and start one gRPC server; returns once it is serving."""
    import faiss

    from recsvc import metrics
    from recsvc.auth import Auth
    from recsvc.customer_service import Customers
    from recsvc.experiments import ExperimentsError
    from recsvc.interceptors import AuthInterceptor, MetricsInterceptor
    from recsvc.offer_service import OfferService
    from recsvc.offers import OfferCatalogError
    from recsvc.paging import PageTokens
    from recsvc.product_service import ProductService
    from recsvc.promotions import PromotionsError, PromotionService
    from recsvc.servicer import (
        AdminServicer,
        EventsServicer,
        Merchandising,
        PrivacyServicer,
        RecommenderServicer,
    )
    from recsvc.v1 import recommender_pb2_grpc
    from recsvc.web.face import Parts, start_web
    from recsvc.web.handlers import Handlers

    config = config.checked()
    # One query per request thread: OpenMP inside a query only adds contention.
    faiss.omp_set_num_threads(1)
    previous: dict[str, str | None] = {"version": None}

    def on_reload(outcome: str, version: str) -> None:
        metrics.record_reload(
            outcome, version, previous["version"] if outcome == "loaded" else None
        )
        if outcome == "loaded":
            previous["version"] = version

    store = ModelStore(config.model_dir, engine_config(config), on_reload=on_reload)
    store.reload()  # refuse to start without a loadable model: BundleError says why
    # One pool of request threads for gRPC and HTTP calls alike.
    executor = ThreadPoolExecutor(
        max_workers=config.threads,
        thread_name_prefix="rpc",
        # OpenMP settings are per thread: each request thread sets its own.
        initializer=faiss.omp_set_num_threads,
        initargs=(1,),
    )
    auth = Auth(config.auth_tokens, config.rate_limit, config.address_rate_limit)
    interceptors = [MetricsInterceptor(), AuthInterceptor(auth)]
    # The HTTP layer serves the same handlers through the same interceptors.
    handlers = Handlers(interceptors)
    server = grpc.server(
        executor,
        interceptors=interceptors,
        options=[("grpc.so_reuseport", 1 if reuse_port else 0)],
        # Past this many calls in progress or queued, answer RESOURCE_EXHAUSTED at once
        # instead of queueing without bound (latency would grow for everyone).
        maximum_concurrent_rpcs=config.concurrency_limit,
    )
    try:
        features = feature_store(config)
    except SettingsError as exc:  # a cluster client that finds no cluster
        store.close()
        raise ConfigError(str(exc)) from None
    realtime = Realtime(features, metrics.DEGRADED.inc, metrics.OUTAGES.inc)

    def count_events(counts: dict[str, int]) -> None:
        for status, n in counts.items():
            metrics.EVENTS.labels(status).inc(n)

    try:
        offers = OfferService(config.offers, realtime)
    except (OfferCatalogError, OSError) as exc:
        store.close()
        raise ConfigError(f"RECSVC_OFFERS: {exc}") from None
    try:
        promotions = PromotionService(config.promotions, realtime)
    except (PromotionsError, OSError) as exc:
        store.close()
        raise ConfigError(f"RECSVC_PROMOTIONS: {exc}") from None
    realtime.check_redemption = offers.check_redemption
    # A reload answered by any worker of any replica is repeated here (recsvc/reloads.py).
    signals = ReloadSignals(realtime.store)
    signals.on("model", lambda payload: store.reload(str(payload["version"])))
    signals.on("offers", lambda payload: reload_offers(offers, payload))
    customers = Customers(realtime.store, offers.offer_ids)
    trending = Trending(
        realtime, TrendingConfig(config.trending_refresh, config.trending_min_events)
    )
    experiments = Experiments(config.experiments, store)
    if config.experiments is not None:
        try:
            experiments.reload()
        except ExperimentsError as exc:
            store.close()
            raise ConfigError(f"RECSVC_EXPERIMENTS: {exc}") from None
    signals.on("promotions", lambda payload: promotions.reload())
    signals.on("experiments", lambda payload: experiments.reload())
    # Without a configured key (tests, in-process servers): a key of this process alone.
    key = config.page_token_key.encode() or secrets.token_bytes(32)
    tokens = PageTokens(key, config.page_ttl) if config.paging else None
    recommender = RecommenderServicer(
        store,
        realtime,
        lambda kind: metrics.FALLBACKS.labels(kind).inc(),
        customers,
        offers,
        Merchandising(promotions, trending),
        ProductService(experiments, realtime, tokens),
    )
    privacy = PrivacyServicer(customers)
    events = EventsServicer(
        store,
        realtime,
        count_events,
        lambda events: metrics.record_attributed(events, experiments.labels),
    )
    admin = AdminServicer(store, realtime, customers, offers, promotions, experiments, signals)
    health_servicer = health.HealthServicer(experimental_non_blocking=True)
    for target in (server, handlers):
        recommender_pb2_grpc.add_RecommenderServicer_to_server(recommender, target)
        recommender_pb2_grpc.add_PrivacyServicer_to_server(privacy, target)
        recommender_pb2_grpc.add_EventsServicer_to_server(events, target)
        recommender_pb2_grpc.add_AdminServicer_to_server(admin, target)
        health_pb2_grpc.add_HealthServicer_to_server(health_servicer, target)
    names = [
        *SERVICES,
        health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
        reflection.SERVICE_NAME,
    ]
    reflection.enable_server_reflection(names, server)
    host = f"[{config.host.strip('[]')}]" if ":" in config.host else config.host  # IPv6
    address = f"{host}:{config.port}"

    def fail(message: str) -> ConfigError:
        store.close()
        experiments.close()
        if realtime.store is not None:
            realtime.store.close()
        return ConfigError(message)

    tls = config.tls_cert is not None and config.tls_key is not None
    try:
        if config.tls_cert is not None and config.tls_key is not None:
            pair = [
                (
                    read_pem(config.tls_key, "RECSVC_TLS_KEY"),
                    read_pem(config.tls_cert, "RECSVC_TLS_CERT"),
                )
            ]
            port = server.add_secure_port(address, grpc.ssl_server_credentials(pair))
        else:
            port = server.add_insecure_port(address)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    except RuntimeError:  # grpcio raises when it cannot bind or cannot use the key pair
        port = 0
    if port == 0:
        if tls:
            raise fail(
                f"cannot listen on {address} with TLS: the address is in use or not of this "
                "host, or RECSVC_TLS_CERT and RECSVC_TLS_KEY are not a matching PEM "
                "certificate and private key"
            )
        raise fail(f"cannot listen on {address} (in use, or not an address of this host)")
    web = None
    if config.http_port:
        from recsvc.web.serve import HttpError

        try:
            parts = Parts(handlers, auth, executor, store, realtime, offers)
            web = start_web(config, parts, reuse_port)
        except HttpError as exc:
            server.stop(None)
            raise fail(str(exc)) from None
    # Known but not ready until the model, catalog and watchers are: a health check in between
    # answers NOT_SERVING (what load balancers wait on), not NOT_FOUND.
    for name in ("", *SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    server.start()
    realtime.sync_catalog(store.engine)  # products created live, before the first request
    store.watch(config.reload_interval)
    experiments.watch(config.reload_interval)
    for name in ("", *SERVICES):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    store_health = StoreHealth(health_servicer, realtime.store)
    store_health.start()  # Events and Privacy: NOT_SERVING while Redis cannot store
    signals.start()
    http = f", HTTP on {host}:{web.port}" if web is not None else ""
    log.info(
        "serving model %s on %s:%d%s (pid %d)", store.engine.version, host, port, http, os.getpid()
    )
    return Running(
        server, port, store, health_servicer, realtime, store_health, web, experiments, signals
    )


def reload_offers(offers: OfferService, payload: dict[str, Any]) -> None:
    """Another worker reloaded the offer catalog: read this replica's file again."""
    if offers.path is None:
        return
    catalog = offers.reload()
    announced = payload.get("catalog_version")
    if announced and catalog.digest[:12] != announced:
        log.warning(
            "offer catalog %s here is version %s, the reload announced %s: is %s the same "
            "file on every replica?",
            offers.path,
            catalog.digest[:12],
            announced,
            offers.path,
        )


def read_pem(path: Path, variable: str) -> bytes:
    """A PEM file's bytes, or ConfigError naming the variable and what is wrong."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{variable}: cannot read {path}: {exc.strerror or exc}") from None
    if b"-----BEGIN " not in data:
        raise ConfigError(f"{variable}: {path} is not a PEM file (no '-----BEGIN' line)")
    return data


def _worker(config: ServeConfig, reuse_port: bool) -> None:
    from formats.bundle import BundleError

    try:
        running = start(config, reuse_port=reuse_port)
    except (BundleError, ConfigError) as exc:
        log.error("cannot serve: %s", exc)
        raise SystemExit(2) from None
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if not stopping.is_set():
            stopping.set()
            threading.Thread(target=running.stop, name="graceful-stop").start()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    running.server.wait_for_termination()


def with_auth(config: ServeConfig) -> ServeConfig:
    """No tokens: refuse a non-loopback address; on loopback make a development token."""
    if config.auth_tokens:
        return config
    if not config.is_loopback:
        raise ConfigError(
            f"refusing to serve on {config.host} without tokens: set RECSVC_AUTH_TOKENS "
            "(e.g. 'secret=recommend+events') or RECSVC_AUTH_TOKENS_FILE"
        )
    token = secrets.token_urlsafe(24)
    token_file = config.model_dir.parent / "dev-token"
    token_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(token_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # the mode above applies only when the file is created
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    print(
        f"development token (all scopes, loopback only; also in {token_file}):\n  {token}",
        flush=True,
    )
    return replace(config, auth_tokens={token: frozenset(SCOPES)})


def claim_port(config: ServeConfig) -> None:
    """Refuse to start while another `recsvc serve` of this machine has the port.

    Workers bind with SO_REUSEPORT, so the kernel would let a second server join the port and
    take half of its connections, perhaps with another model. A lock per port, held for the
    life of this process and its forked workers (and released by the kernel however they
    end), tells the two apart."""
    if config.port == 0:
        return
    host = config.host.strip("[]").replace(":", "_")
    path = Path(tempfile.gettempdir()) / f"recsvc-serve-{host}-{config.port}.lock"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        owner = path.read_text().strip() or "another process"
        raise ConfigError(
            f"{config.host}:{config.port} is served by another recsvc serve on this machine "
            f"(pid {owner}); stop it or choose another --port"
        ) from None
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())


def with_page_key(config: ServeConfig) -> ServeConfig:
    """No RECSVC_PAGE_TOKEN_KEY: on loopback, a generated key kept private beside the dev
    token (so every worker, and the next start, accept the same tokens); elsewhere paging is
    off, since replicas could not continue each other's tokens."""
    if config.page_token_key or not config.paging:
        return config
    if not config.is_loopback:
        log.warning(
            "paging is off: set RECSVC_PAGE_TOKEN_KEY (the same secret on every replica) to "
            "give RecommendProducts answers a next_page_token"
        )
        return replace(config, paging=False)
    key_file = config.model_dir.parent / "page-token-key"
    key_file.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = key_file.read_text().strip()
    else:
        key = secrets.token_urlsafe(32)
        with os.fdopen(fd, "w") as f:
            f.write(key + "\n")
    return replace(config, page_token_key=key)


def serve(config: ServeConfig) -> None:
    """Serve until SIGTERM or SIGINT, then stop gracefully."""
    from formats.bundle import read_manifest, resolve, verify_files

    # Fail here, clearly, before starting anything: workers would each fail the same way.
    path = resolve(config.model_dir)
    verify_files(path, read_manifest(path))
    if config.offers is not None:
        from recsvc.offers import OfferCatalogError, load_catalog

        try:
            load_catalog(config.offers)
        except (OfferCatalogError, OSError) as exc:
            raise ConfigError(f"RECSVC_OFFERS: {exc}") from None
    if config.promotions is not None:
        from recsvc.promotions import PromotionsError, load_promotions

        try:
            load_promotions(config.promotions)
        except (PromotionsError, OSError) as exc:
            raise ConfigError(f"RECSVC_PROMOTIONS: {exc}") from None
    claim_port(config)  # before the dev token: a second server must not replace the first's
    if config.experiments is not None:
        from recsvc.experiments import ExperimentsError, load_experiments

        try:
            load_experiments(config.experiments)  # versions are checked by each worker
        except ExperimentsError as exc:
            raise ConfigError(f"RECSVC_EXPERIMENTS: {exc}") from None
    config = with_page_key(with_auth(config))
    with redis_url(config.redis, watch=True) as url:
        if config.redis.url is None:
            print(f"embedded Redis: {url} (data in {config.redis.data_dir})", flush=True)
        _serve(replace(config, redis=replace(config.redis, url=url)))


def _serve(config: ServeConfig) -> None:
    if config.workers == 1:
        if config.metrics_port:
            from prometheus_client import start_http_server

            try:
                start_http_server(config.metrics_port, addr=config.host)
            except OSError as exc:
                raise ConfigError(f"metrics port {config.metrics_port}: {exc}") from exc
        _worker(config, reuse_port=False)
        return
    # Multi-process metrics must be configured before prometheus_client is imported.
    metrics_dir = tempfile.mkdtemp(prefix="recsvc-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
    if config.metrics_port:
        # Bound before forking, so a busy port fails cleanly with no worker left running.
        from prometheus_client import CollectorRegistry, start_http_server
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        try:
            start_http_server(config.metrics_port, addr=config.host, registry=registry)
        except OSError as exc:
            raise ConfigError(f"metrics port {config.metrics_port}: {exc}") from exc
    if config.http_port:
        # Each worker binds it with SO_REUSEPORT, which would share it with a stranger that
        # set the option too: a plain bind first fails cleanly when anything holds it.
        from recsvc.web.serve import HttpError, bind

        try:
            bind(config.host, config.http_port, reuse_port=False).close()
        except HttpError as exc:
            raise ConfigError(str(exc)) from None
    ctx = multiprocessing.get_context("fork")
    workers = [
        ctx.Process(target=_worker, args=(config, True), name=f"recsvc-worker-{i}")
        for i in range(config.workers)
    ]
    for w in workers:
        w.start()

    forwarded: set[int] = set()

    def forward(signum: int, frame: FrameType | None) -> None:
        forwarded.add(signum)
        for w in workers:
            if w.pid is not None and w.is_alive():
                os.kill(w.pid, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        for w in workers:
            w.join()
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
    codes = [w.exitcode for w in workers]
    # A worker still loading the model has no handler yet: the forwarded signal ends it at
    # once, which is the stop that was asked for, not a failure.
    if any(code and -code not in forwarded for code in codes):
        print(f"recsvc serve: worker exit codes {codes}", file=sys.stderr)
        raise SystemExit(1)
