"""recsvc.ratelimit's token buckets on a clock the test moves (no sleeping, no timing)."""

from __future__ import annotations

import threading

import pytest

from recsvc.ratelimit import Limit, RateLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_a_full_bucket_allows_a_burst_then_refuses_with_the_wait(clock: Clock) -> None:
    limiter = RateLimiter(Limit(rate=2.0, burst=3.0), clock=clock)
    assert [limiter.acquire("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.acquire("a") == pytest.approx(0.5)  # one token in 1 / rate seconds
    clock.now += 0.25
    assert limiter.acquire("a") == pytest.approx(0.25)  # refusals do not cost tokens
    clock.now += 0.25
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(0.5)


def test_tokens_refill_at_the_rate_up_to_the_burst(clock: Clock) -> None:
    limiter = RateLimiter(Limit(rate=10.0, burst=5.0), clock=clock)
    for _ in range(5):
        assert limiter.acquire("a") == 0.0
    clock.now += 3600  # an hour idle: still only a burst of 5
    assert [limiter.acquire("a") for _ in range(6)][-2:] == [0.0, pytest.approx(0.1)]
    clock.now += 0.35  # 3.5 tokens
    assert [limiter.acquire("a") == 0.0 for _ in range(4)] == [True, True, True, False]


def test_keys_have_buckets_of_their_own(clock: Clock) -> None:
    limiter = RateLimiter(Limit(rate=1.0, burst=1.0), clock=clock)
    assert limiter.acquire("a") == 0.0
    assert limiter.acquire("a") == pytest.approx(1.0)
    assert limiter.acquire("b") == 0.0
    assert limiter.acquire("b") > 0


def test_the_table_of_buckets_is_bounded(clock: Clock) -> None:
    limiter = RateLimiter(Limit(rate=1.0, burst=2.0), clock=clock, max_keys=100)
    for n in range(1000):  # a scan of made-up tokens
        limiter.acquire(f"key-{n}")
        clock.now += 0.02  # a bucket is full again 1 s after its one call
    assert len(limiter._buckets) <= 101
    # Forgetting only drops full buckets: a key that is being limited stays limited.
    limiter.acquire("busy")
    limiter.acquire("busy")
    for n in range(500):
        limiter.acquire(f"more-{n}")
    assert limiter.acquire("busy") > 0


def test_concurrent_callers_never_get_more_than_the_burst(clock: Clock) -> None:
    limiter = RateLimiter(Limit(rate=1.0, burst=50.0), clock=clock)
    allowed: list[bool] = []
    lock = threading.Lock()

    def caller() -> None:
        for _ in range(100):
            ok = limiter.acquire("shared") == 0.0
            with lock:
                allowed.append(ok)

    threads = [threading.Thread(target=caller) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(allowed) == 50 and len(allowed) == 800  # the clock never moved


@pytest.mark.parametrize(
    ("text", "rate", "burst"),
    [("100", 100, 200), ("100/s", 100, 200), ("2/s:3", 2, 3), (" 0.5 ", 0.5, 1), ("3:1", 3, 1)],
)
def test_parse(text: str, rate: float, burst: float) -> None:
    assert Limit.parse(text, "X") == Limit(rate, burst)


@pytest.mark.parametrize("text", ["0", "0/s", "0:5"])
def test_parse_zero_is_no_limit(text: str) -> None:
    assert Limit.parse(text, "X") is None


@pytest.mark.parametrize("text", ["", "x", "-1", "1:0.5", "1:-3", "inf", "nan", "5/min", "1:y"])
def test_parse_refuses_naming_the_source(text: str) -> None:
    with pytest.raises(ValueError, match="RECSVC_RATE_LIMIT"):
        Limit.parse(text, "RECSVC_RATE_LIMIT")
