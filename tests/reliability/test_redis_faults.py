# mypy: disable-error-code="no-untyped-call"
"""Redis failing under traffic: killed, hung (SIGSTOP) and restarted, while reader threads
call the Recommender and a tracker sends events, retrying each batch until it is answered.

Reads never fail (they answer from the model alone); TrackEvents answers UNAVAILABLE while
it cannot store; health says NOT_SERVING for Events and Privacy meanwhile; afterwards every
acknowledged event is in the stream exactly once. A write that timed out may still land
(issue 11, defect 8): its retry then comes back DUPLICATE, so the client's retry is safe.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis_fixtures import RedisProcess, new_namespace, start_server
from traffic import Readers, Tracker, stream

from feature_store.connection import RedisSettings
from recsvc.server import Running
from reliability.serve_process import NOT_SERVING, SERVING, health, wait_until


@pytest.fixture
def running(served_models: Path, redis_process: RedisProcess) -> Iterator[Running]:
    """A server on ``redis_process`` with short timeouts, as a latency-minded operator
    sets them: reads give up after 100 ms, writes after 500 ms."""
    namespace = new_namespace()
    settings = RedisSettings(
        url=redis_process.url, namespace=namespace, read_timeout_ms=100, write_timeout_ms=500
    )
    server = start_server(served_models, redis_process.url, namespace, redis=settings)
    yield server
    server.stop(grace=1.0)


def events_health(port: int) -> int:
    return health(port, "recsvc.v1.Events")


def check_stream(tracker: Tracker, url: str, namespace: str) -> Counter[str]:
    stored = Counter(e.event_id for e in stream(url, namespace))
    assert set(tracker.acknowledged) <= set(stored), "an acknowledged event was lost"
    assert len(tracker.acknowledged) == len(set(tracker.acknowledged))
    assert max(stored.values()) == 1, "an event was stored twice"
    return stored


def test_health_follows_redis_down_and_back(running: Running, redis_process: RedisProcess) -> None:
    assert events_health(running.port) == SERVING
    redis_process.kill()
    down = wait_until("Events NOT_SERVING", lambda: events_health(running.port) == NOT_SERVING, 10)
    assert health(running.port, "recsvc.v1.Privacy") == NOT_SERVING
    assert health(running.port, "recsvc.v1.Recommender") == SERVING
    assert health(running.port, "") == SERVING
    redis_process.start()
    up = wait_until("Events SERVING", lambda: events_health(running.port) == SERVING, 10)
    assert health(running.port, "recsvc.v1.Privacy") == SERVING
    print(f"health: NOT_SERVING {down:.1f} s after the kill, SERVING {up:.1f} s after restart")


@pytest.mark.parametrize("fault", ["sigstop", "sigterm-restart", "kill-9-restart"])
def test_redis_fault_under_traffic_fails_no_read_and_loses_no_acknowledged_event(
    running: Running, redis_process: RedisProcess, served_models: Path, fault: str
) -> None:
    settings = running.realtime.store
    assert settings is not None
    namespace = settings.keys.namespace
    customer = "C0000001"
    with Readers(running.port, customer) as readers, Tracker(running.port) as tracker:
        before = tracker.unavailable
        began = time.monotonic()
        if fault == "sigstop":
            os.kill(redis_process.pid, signal.SIGSTOP)  # hung: connections open, no answers
            wait_until("unavailable", lambda: tracker.unavailable > before, 10)
            time.sleep(2.0)  # writes time out and pile up in the paused server's buffers
            os.kill(redis_process.pid, signal.SIGCONT)
        else:
            if fault == "sigterm-restart":
                assert redis_process.process is not None
                redis_process.process.terminate()  # SHUTDOWN: a final AOF fsync
                redis_process.process.wait(timeout=30)
            else:
                redis_process.kill()
            wait_until("unavailable", lambda: tracker.unavailable > before, 10)
            redis_process.start()  # same port, same data
        resumed = time.monotonic()
        accepted = len(tracker.acknowledged)
        wait_until("events acknowledged again", lambda: len(tracker.acknowledged) > accepted, 15)
        recovered = time.monotonic() - resumed
        tracker.wait_for_batches(3)
        readers.wait_for_calls(10)
    assert readers.failures == [], readers.failures[:3]
    stored = check_stream(tracker, redis_process.url, namespace)
    print(
        f"{fault}: outage {resumed - began:.1f} s, events acknowledged {recovered:.2f} s after "
        f"Redis was back; {tracker.unavailable - before} UNAVAILABLE answers retried, "
        f"{tracker.statuses['EVENT_STATUS_DUPLICATE']} retried events found already stored; "
        f"{len(stored)} events stored once each, {readers.calls} reads all answered"
    )
    wait_until("Events SERVING", lambda: events_health(running.port) == SERVING, 10)
