"""The limiter's bookkeeping: headers parsed, budgets learned, concurrency cut on 429s and regrown."""

from __future__ import annotations

import asyncio
import time

from ratelimited_server import TokenBucket

from dbt_llm.engine.limiter import Limiter
from dbt_llm.providers.rate_headers import RateHeaders


def test_rate_headers() -> None:
    headers = {"x-ratelimit-limit-requests": "600", "x-ratelimit-remaining-requests": "17", "other": "x"}
    assert RateHeaders.parse(headers) == RateHeaders(600.0, 17.0, None, None)
    assert RateHeaders.parse({"content-type": "application/json"}) is None


def test_learned_budget_paces_requests() -> None:
    async def scenario() -> float:
        limiter = Limiter(32)
        seq = await limiter.acquire(10)
        # The provider says: 600 requests per minute, none left right now.
        limiter.release(seq, ok=True, headers=RateHeaders(600, 0, None, None), latency=0.2)
        return limiter.requests.wait(1, limiter.requests.stamp)

    assert abs(asyncio.run(scenario()) - 0.1) < 1e-9  # empty at 10 requests/s: next slot in 0.1 s


async def _work(limiter: Limiter, workers: int, each: int) -> None:
    """`workers` callers, each sending `each` requests one after another."""

    async def worker() -> None:
        for _ in range(each):
            seq = await limiter.acquire(1)
            await asyncio.sleep(0.001)
            limiter.release(seq, ok=True)

    await asyncio.gather(*(worker() for _ in range(workers)))


def test_429s_cut_concurrency_and_clean_answers_grow_it_back() -> None:
    async def scenario() -> tuple[float, float, float, float]:
        limiter = Limiter(32, start_concurrency=8)
        before = limiter.limit
        limiter.release(await limiter.acquire(1), ok=False, rate_limited=True, retry_after=0.01)
        cut = limiter.limit
        limiter.release(await limiter.acquire(1), ok=False, rate_limited=True)  # same burst: no second cut
        again = limiter.limit
        await _work(limiter, workers=50, each=10)  # more callers than slots
        return before, cut, again, limiter.limit

    before, cut, again, regrown = asyncio.run(scenario())
    assert abs(cut - before * 0.7) < 1e-9 and again == cut
    assert regrown > cut + 3


def test_concurrency_grows_only_while_the_slots_are_the_limit() -> None:
    async def scenario() -> tuple[float, float]:
        limiter = Limiter(64, start_concurrency=8)
        await _work(limiter, workers=4, each=50)  # 4 callers never fill 8 slots
        idle = limiter.limit
        await _work(limiter, workers=100, each=5)  # a queue: slow start grows the slots
        return idle, limiter.limit

    idle, busy = asyncio.run(scenario())
    assert idle == 8.0 and busy >= 32


def test_configured_ceiling_paces_from_the_start() -> None:
    limiter = Limiter(16, requests_per_minute=120)
    assert limiter.requests.rate == 2.0
    assert limiter.requests.wait(1, limiter.requests.stamp) == 0.5


def test_a_request_bigger_than_a_minute_of_tokens_waits_for_a_full_bucket_not_forever() -> None:
    limiter = Limiter(16, tokens_per_minute=6000)  # 100 tokens a second, 6000 at most in the bucket
    now = limiter.tokens.stamp
    assert limiter.tokens.wait(9000, now) == 60.0  # from empty: one minute, when the bucket is full
    limiter.tokens.level = 6000.0
    assert limiter.tokens.wait(9000, now) == 0.0


async def _against_remaining_only_quota(limiter: Limiter, per_minute: float, requests: int, window: float = 60) -> int:
    """`requests` requests from 64 callers against a provider bucket of `per_minute` requests a minute
    that holds `window` seconds of it (full at the start) and answers, like Azure OpenAI, with only
    `x-ratelimit-remaining-requests`; returns how many it refused with a 429."""
    bucket = TokenBucket(per_minute, window, time.monotonic())
    todo = list(range(requests))
    refused = 0

    async def caller() -> None:
        nonlocal refused
        while todo:
            todo.pop()
            seq = await limiter.acquire(1)
            admitted = bucket.has(1, time.monotonic())
            if admitted:
                bucket.take(1, time.monotonic())
            headers = RateHeaders(remaining_requests=float(bucket.remaining(time.monotonic())))
            await asyncio.sleep(0.002)  # the answer's latency
            if admitted:
                limiter.release(seq, ok=True, headers=headers, latency=0.002)
            else:
                refused += 1
                todo.append(0)  # retried
                limiter.release(seq, ok=False, rate_limited=True, headers=headers)

    await asyncio.gather(*(caller() for _ in range(64)))
    return refused


def test_remaining_only_headers_keep_the_limiter_under_the_quota() -> None:
    # 3000 requests a minute (50 a second), 3150 to send: the last 150 must be paced at the refill.
    limiter = Limiter(64)
    refused = asyncio.run(_against_remaining_only_quota(limiter, 3000, 3150))
    assert limiter.requests.peak >= 2990  # the bucket's size, learned from `remaining` alone
    assert refused <= 3, f"{refused} requests got a 429"


def test_remaining_only_headers_of_a_short_window_are_paced_at_the_measured_refill() -> None:
    # Azure counts requests over 10 s windows: 3000 a minute shows at most 500 remaining. Paced as 500 a
    # minute the last 250 would crawl; the limiter measures the refill between reports instead.
    limiter = Limiter(64)
    refused = asyncio.run(_against_remaining_only_quota(limiter, 3000, 750, window=10))
    assert 490 <= limiter.requests.peak <= 520 and limiter.requests.capacity == limiter.requests.peak
    assert limiter.requests.rate is not None and limiter.requests.rate >= 40  # the true refill: 50 a second
    assert refused <= 3, f"{refused} requests got a 429"
