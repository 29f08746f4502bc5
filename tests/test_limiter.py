"""The limiter's bookkeeping: headers parsed, budgets learned, concurrency cut on 429s and regrown."""

from __future__ import annotations

import asyncio

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
