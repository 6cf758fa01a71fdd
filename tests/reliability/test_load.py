# mypy: disable-error-code="no-untyped-call"
"""Load past the maximum and for a long time, against `recsvc serve` in a subprocess with its
embedded Redis.

Overload: many more concurrent callers than RECSVC_MAX_CONCURRENT_RPCS; every call is
answered before its deadline, OK or RESOURCE_EXHAUSTED (shed at once, nothing queued without
bound), and the server answers health and normal calls afterwards.

Soak (long part): 10 minutes at 70% of the throughput measured first, RSS and open file
descriptors of every server process sampled every 5 s; a growth trend over the second half
fails the test.
"""

from __future__ import annotations

import asyncio
import os

import grpc
import psutil
import pytest
from grpc_helpers import REC

from recsvc.v1 import recommender_pb2 as pb
from recsvc.v1 import recommender_pb2_grpc as pb_grpc
from reliability.conftest import NewServe
from reliability.load import Mix, Outcome, Sampler, slope
from reliability.serve_process import SERVING, ServeProcess, health

SHED = {"OK", "RESOURCE_EXHAUSTED"}
MIB = 1024 * 1024


def answers_normally(port: int) -> None:
    assert health(port) == SERVING
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = pb_grpc.RecommenderStub(channel).RecommendProducts(
            pb.RecommendProductsRequest(customer_id="C0000001", limit=5), metadata=REC, timeout=10
        )
        assert len(reply.items) == 5


async def closed_loop(port: int, callers: int, seconds: float, channels: int = 4) -> Outcome:
    async with Mix(port, channels) as mix:
        return await mix.closed_loop(callers, seconds)


def check_shed(outcome: Outcome) -> None:
    assert set(outcome.codes) <= SHED, outcome.summary()  # never a deadline or a collapse
    assert outcome.codes["RESOURCE_EXHAUSTED"] > 0, outcome.summary()  # it was overload
    assert outcome.codes["OK"] > 0, outcome.summary()


def test_overload_is_shed_with_resource_exhausted_and_the_server_keeps_serving(
    new_serve: NewServe,
) -> None:
    serve = new_serve(env={"RECSVC_THREADS": "2", "RECSVC_MAX_CONCURRENT_RPCS": "4"})
    serve.start()
    outcome = asyncio.run(closed_loop(serve.port, callers=64, seconds=5))
    print(f"overload, 64 callers over a limit of 4: {outcome.summary()}")
    check_shed(outcome)
    answers_normally(serve.port)


@pytest.mark.long
def test_two_minutes_of_overload_on_two_workers(new_serve: NewServe) -> None:
    serve = new_serve(workers=2, env={"RECSVC_MAX_CONCURRENT_RPCS": "32"})
    serve.start()
    outcome = asyncio.run(closed_loop(serve.port, callers=256, seconds=120, channels=8))
    print(f"overload, 256 callers over 2 x 32: {outcome.summary()}")
    check_shed(outcome)
    answers_normally(serve.port)


def server_processes(serve: ServeProcess) -> dict[str, psutil.Process]:
    procs = {"serve": psutil.Process(serve.pid)}
    for i, worker in enumerate(procs["serve"].children()):
        procs[f"worker-{i}"] = worker
    assert serve.keeper_pid is not None and serve.redis_pid is not None
    procs["keeper"] = psutil.Process(serve.keeper_pid)
    procs["redis-server"] = psutil.Process(serve.redis_pid)
    return procs


# RECSVC_SOAK_SECONDS shortens it to try the test itself; the suite runs ten minutes.
SOAK_SECONDS = int(os.environ.get("RECSVC_SOAK_SECONDS", "600"))
# Growth a steady process may show over the second half, projected to ten minutes: allocator
# noise and caches filling, not a leak (a leak of 100 bytes or one descriptor per call would
# add 18 MiB or 180,000 descriptors in ten minutes at 300 calls/s). Descriptors: redis-py opens
# a pooled connection whenever more request threads than before talk to Redis at once, so a
# burst on a busy machine adds a few, up to RECSVC_THREADS per client. redis-server's memory
# grows by design (every tracked event stays in the stream until `recsvc events export`):
# only its descriptors count.
MAX_RSS_GROWTH = 16 * MIB
MAX_FD_GROWTH = 16.0
# At 70% of the maximum a quiet machine answers every call; a machine shared with other jobs
# (load average 20 on 2 cores in the recorded runs) has moments where it cannot, and then
# calls are shed (RESOURCE_EXHAUSTED) or the client itself falls behind. Those may be at most
# this share of the calls; nothing else may happen.
MAX_SHED = 0.05


@pytest.mark.long
@pytest.mark.timeout(SOAK_SECONDS + 300)
def test_ten_minute_soak_at_70_percent_shows_no_memory_or_descriptor_growth(
    new_serve: NewServe,
) -> None:
    serve = new_serve(workers=2)
    serve.start()
    maximum = asyncio.run(closed_loop(serve.port, callers=32, seconds=30))
    assert set(maximum.codes) == {"OK"}, maximum.summary()
    rate = 0.7 * maximum.rate

    async def soak() -> Outcome:
        async with Mix(serve.port) as mix:
            return await mix.paced(rate, SOAK_SECONDS)

    with Sampler(server_processes(serve), interval=5.0) as sampler:
        outcome = asyncio.run(soak())
    samples = sampler.samples
    print(f"soak: maximum {maximum.summary()}")
    print(f"soak: at {rate:.0f}/s: {outcome.summary()}")
    report = []
    for name in samples.rss:
        rss, fds = samples.rss[name], samples.fds[name]
        growth = slope(samples.times, rss) * SOAK_SECONDS
        fd_growth = slope(samples.times, fds) * SOAK_SECONDS
        report.append(
            f"{name}: RSS {rss[0] / MIB:.0f} -> {rss[-1] / MIB:.0f} MiB "
            f"(trend {growth / MIB:+.1f} MiB/10 min), fds {fds[0]:.0f} -> {fds[-1]:.0f} "
            f"(trend {fd_growth:+.1f}/10 min)"
        )
    print("soak: " + "\n      ".join(report))
    assert set(outcome.codes) <= {"OK", "RESOURCE_EXHAUSTED", "CLIENT_BEHIND"}, outcome.summary()
    assert outcome.codes["OK"] >= (1 - MAX_SHED) * outcome.calls, outcome.summary()
    assert len(samples.times) >= SOAK_SECONDS / 5 - 2
    for name in samples.rss:
        fd_growth = slope(samples.times, samples.fds[name]) * SOAK_SECONDS
        assert fd_growth < MAX_FD_GROWTH, f"{name}: open files grow: {report}"
        if name != "redis-server":
            growth = slope(samples.times, samples.rss[name]) * SOAK_SECONDS
            assert growth < MAX_RSS_GROWTH, f"{name}: memory grows: {report}"
    answers_normally(serve.port)
