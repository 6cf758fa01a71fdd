# mypy: disable-error-code="no-untyped-call"
"""Three `recsvc serve` replicas (separate processes on loopback) on one model directory and
one Redis: the shipped client spreads calls round robin and loses none when a replica is
killed under load; a reload answered by one worker reaches every worker of every replica."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest
from grpc_helpers import clean_env, new_id, recsvc
from redis_fixtures import new_namespace
from serving_fixtures import add_copy, free_port, trained

from feature_store.embedded import EmbeddedRedis
from formats.events import Event
from recsvc.client import SERVICE_CONFIG, Client, channel_target
from recsvc.v1 import recommender_pb2 as pb

TOKENS = "rec-token=recommend,events-token=events,admin-token=admin"
OFFERS = """version: 1
offers:
  - offer_id: {offer}
    title: Free shipping
    kind: free_shipping
    cost: 1
    value_to_business: 2
"""


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes]
    workers: int

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


@pytest.fixture(scope="module")
def replicas(
    tmp_path_factory: pytest.TempPathFactory, embedded_redis: EmbeddedRedis
) -> Iterator[tuple[list[Replica], Path, Path]]:
    root = tmp_path_factory.mktemp("replicas")
    model_dir = root / "models"
    source = trained(tmp_path_factory, "exact")
    add_copy(model_dir, source, "v1", publish=True)
    add_copy(model_dir, source, "v2")
    offers = root / "offers.yaml"
    offers.write_text(OFFERS.format(offer="shipping-1"))
    env = clean_env(
        root,
        REDIS_URL=embedded_redis.url,
        RECSVC_REDIS_NAMESPACE=new_namespace(),
        RECSVC_REDIS_TIMEOUT_MS="2000",
        RECSVC_AUTH_TOKENS=TOKENS,
        RECSVC_OFFERS=str(offers),
        # No model watcher within the test: a model reload can only travel through Redis.
        RECSVC_RELOAD_INTERVAL="600",
    )
    started: list[Replica] = []
    try:
        for i, workers in enumerate((2, 1, 1)):  # the first has two workers (SO_REUSEPORT)
            port = free_port()
            log = (root / f"replica-{i}.log").open("wb")
            command = recsvc("serve", "--model-dir", str(model_dir))
            args = ["--port", str(port), "--workers", str(workers), "--metrics-port", "0"]
            process = subprocess.Popen(
                [*command, *args], env=env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
            started.append(Replica(port, process, workers))
        for r in started:
            wait_serving(r)
        yield started, model_dir, offers
    finally:
        for r in started:
            r.kill()


def wait_serving(replica: Replica, seconds: float = 90.0) -> None:
    deadline = time.monotonic() + seconds
    while True:
        assert replica.process.poll() is None, "a replica exited"
        try:
            with Client(replica.address, token="admin-token", timeout=2) as c:
                c.model_info()
                return
        except grpc.RpcError:
            assert time.monotonic() < deadline, "a replica never served"
            time.sleep(0.2)


def answers(replica: Replica, ask: str, tries: int = 8) -> set[str]:
    """What ``tries`` fresh connections to the replica answer (a new connection may land on
    any of its workers): the model version or the offer catalog version."""
    seen = set()
    for _ in range(tries):
        with Client(replica.address, token="admin-token", timeout=5) as admin:
            if ask == "model":
                seen.add(admin.model_info().version)
            else:
                reply = admin.recommender.RecommendOffers(
                    pb.RecommendOffersRequest(customer_id="C0000001"),
                    metadata=(("authorization", "Bearer rec-token"),),
                    timeout=5,
                )
                seen.add(reply.catalog_version)
    return seen


def test_a_reload_on_one_replica_reaches_every_worker_of_every_replica(
    replicas: tuple[list[Replica], Path, Path],
) -> None:
    servers, _, offers = replicas
    before = {v for r in servers for v in answers(r, "offers", 2)}
    assert len(before) == 1
    offers.write_text(OFFERS.format(offer="shipping-2"))  # same file on every replica
    with Client(servers[2].address, token="admin-token", timeout=10) as admin:
        reply = admin.admin.ReloadOffers(
            pb.ReloadOffersRequest(), metadata=admin.metadata, timeout=10
        )
        new_offers = reply.catalog_version
        assert {new_offers} != before
        started = time.monotonic()
        changed, version = admin.reload("v2")  # publishes v2, answered by this worker
        assert (changed, version) == (True, "v2")
    deadline = started + 10
    while True:
        models = {v for r in servers for v in answers(r, "model")}
        catalogs = {v for r in servers for v in answers(r, "offers")}
        if models == {"v2"} and catalogs == {new_offers}:
            break
        assert time.monotonic() < deadline, f"not everywhere after 10 s: {models} {catalogs}"
        time.sleep(0.2)
    print(f"reloads everywhere {time.monotonic() - started:.1f} s after the calls")


def test_killing_a_replica_under_load_fails_no_call(
    replicas: tuple[list[Replica], Path, Path],
) -> None:
    servers, _, _ = replicas
    victim = servers[1]
    target = ",".join(r.address for r in servers)
    assert channel_target(target).startswith("ipv4:127.0.0.1:")
    assert SERVICE_CONFIG["loadBalancingConfig"] == [{"round_robin": {}}]
    calls, failures = Counter[str](), []
    stop = threading.Event()
    lock = threading.Lock()

    def load(n: int) -> None:
        with (
            Client(target, token="rec-token", timeout=5) as rec,
            Client(target, token="events-token", timeout=5) as events,
        ):
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    if i % 4:
                        rec.recommend(f"C{(n * 1000 + i) % 2000 + 1:07d}", limit=10)
                        kind = "recommend"
                    else:
                        events.track([Event(new_id(), f"C{i % 2000 + 1:07d}", "view",
                                            product_id="P000001")])  # fmt: skip
                        kind = "track"
                except grpc.RpcError as exc:
                    with lock:
                        failures.append(f"{exc.code()}: {exc.details()}")
                    continue
                with lock:
                    calls[kind] += 1

    threads = [threading.Thread(target=load, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    try:
        deadline = time.monotonic() + 60
        while sum(calls.values()) < 200:
            assert time.monotonic() < deadline and not failures, failures[:3]
            time.sleep(0.1)
        # round_robin: the client holds a connection to every replica, not to one.
        for r in servers:
            procs = [psutil.Process(r.process.pid), *psutil.Process(r.process.pid).children()]
            assert any(
                c.status == psutil.CONN_ESTABLISHED and c.laddr.port == r.port
                for p in procs
                for c in p.net_connections(kind="tcp")
            ), f"no connection to replica {r.address}"
        at_kill = sum(calls.values())
        victim.kill()
        while sum(calls.values()) < at_kill + 300:
            assert time.monotonic() < deadline, "the load stalled after the kill"
            time.sleep(0.1)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=30)
    print(f"calls: {dict(calls)} ({at_kill} before the kill); failed: {len(failures)}")
    assert failures == [], failures[:5]


def test_the_documented_service_config_is_the_one_the_client_sends() -> None:
    import json
    import re

    text = (Path(__file__).resolve().parent.parent / "docs" / "api.md").read_text()
    section = text[text.index("## Replicas") :]
    block = re.search(r"```json\n(.*?)\n```", section, re.S)
    assert block is not None
    assert json.loads(block.group(1)) == SERVICE_CONFIG
    with pytest.raises(ValueError, match="HOST:PORT"):
        channel_target("127.0.0.1:1,localhost")
    assert channel_target("localhost:1") == "localhost:1"
    assert channel_target(["127.0.0.1:1", "localhost:2"]) == "ipv4:127.0.0.1:1,127.0.0.1:2"
