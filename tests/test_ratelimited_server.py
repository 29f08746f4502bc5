"""Tests for the rate-limited fake OpenAI server used by the throughput benchmark.

Most tests drive the buckets with a fake clock, so the numbers are exact; a few use the real
clock with loose bounds to show the same holds over the wire in real time.
"""

from __future__ import annotations

import json
import math
import random
import re
import statistics
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from openai_server import build_answer
from ratelimited_server import (
    DEFAULT_MAX_TOKENS,
    Latency,
    RateLimitedOpenAI,
    TokenBucket,
    format_duration,
    main,
    token_cost,
)

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["billing", "bug", "other"]}},
    "required": ["label"],
    "additionalProperties": False,
}
DURATION_RE = re.compile(r"^(\d+ms|(\d+h)?(\d+m)?\d+(\.\d+)?s)$")


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def body(text: str = "a billing question", *, max_tokens: int | None = 50, pad: int = 0) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "model": "gpt-4o-mini",
        "messages": [
            {"role": "system", "content": "Classify." + "x" * pad},
            {"role": "user", "content": f"<input>\n{text}\n</input>"},
        ],
        "response_format": {"type": "json_schema", "json_schema": {"name": "c", "strict": True, "schema": SCHEMA}},
    }
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    return payload


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=5.0) as c:
        yield c


def post(client: httpx.Client, server: RateLimitedOpenAI, payload: dict[str, Any] | None = None) -> httpx.Response:
    return client.post(server.base_url + "/chat/completions", json=payload or body())


def statuses(client: httpx.Client, server: RateLimitedOpenAI, n: int) -> list[int]:
    return [post(client, server).status_code for _ in range(n)]


# --------------------------------------------------------------------------- #
# Pure helpers
# --------------------------------------------------------------------------- #


def test_format_duration_is_openai_style() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(0.12) == "120ms"
    assert format_duration(0.0001) == "1ms"
    assert format_duration(1) == "1s"
    assert format_duration(1.5) == "1.5s"
    assert format_duration(59.9999) == "1m0s"
    assert format_duration(360) == "6m0s"
    assert format_duration(3723.25) == "1h2m3.25s"
    for seconds in (0.0005, 0.2, 0.999, 1.0, 12.3456, 75, 7200):
        assert DURATION_RE.match(format_duration(seconds)), format_duration(seconds)


def test_token_cost_is_prompt_estimate_plus_reserved_output() -> None:
    messages = [{"role": "system", "content": "x" * 10}, {"role": "user", "content": [{"type": "text", "text": "y"}]}]
    assert token_cost({"messages": messages, "max_tokens": 40}) == math.ceil(11 / 4) + 40
    assert token_cost({"messages": messages, "max_completion_tokens": 7}) == 3 + 7
    assert token_cost({"messages": messages}) == 3 + DEFAULT_MAX_TOKENS


def test_latency_is_seeded_clipped_normal() -> None:
    model = Latency()
    draws = [model.sample(random.Random(7)) for _ in range(3)]
    assert len(set(draws)) == 1  # same seed, same draw
    rng = random.Random(1)
    sample = [model.sample(rng) for _ in range(4000)]
    assert min(sample) >= 0.05 and max(sample) <= 0.5
    assert statistics.fmean(sample) == pytest.approx(0.2, abs=0.005)
    assert statistics.stdev(sample) == pytest.approx(0.05, abs=0.005)


def test_token_bucket_capacity_refill_and_debt() -> None:
    bucket = TokenBucket(3000, 1, now=0.0)  # capacity 50, 50 per second
    assert bucket.capacity == 50 and bucket.rate == 50
    bucket.take(50, 0.0)
    assert bucket.level(0.0) == 0
    assert bucket.level(0.1) == pytest.approx(5)
    assert bucket.level(100.0) == 50  # capped at capacity
    assert TokenBucket(3000, 60, now=0.0).capacity == 3000
    assert TokenBucket(3000, 5, now=0.0).capacity == 250
    bucket.take(200, 100.0)  # debt is floored at -capacity
    assert bucket.level(100.0) == -50
    assert bucket.wait_for(1, 100.0) == pytest.approx(51 / 50)
    assert bucket.wait_for(51, 100.0) == math.inf


# --------------------------------------------------------------------------- #
# Buckets over HTTP (fake clock: exact)
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("bucket", "capacity"), [(60, 120), (5, 10), (1, 2)])
def test_burst_admits_exactly_the_bucket_capacity(
    bucket: int, capacity: int, clock: FakeClock, client: httpx.Client
) -> None:
    with RateLimitedOpenAI(rpm=120, tpm=10**9, bucket_seconds=bucket, latency=Latency.none(), clock=clock) as server:
        got = statuses(client, server, capacity + 5)
        assert got == [200] * capacity + [429] * 5
        assert server.admitted_count() == capacity
        stats = server.stats()
        assert (stats.ok, stats.rejected, stats.rejected_requests) == (capacity, 5, 5)


def test_bucket_refills_continuously_at_the_rate(clock: FakeClock, client: httpx.Client) -> None:
    # rpm 600, 1 s bucket: capacity 10, refill 10 per second.
    with RateLimitedOpenAI(rpm=600, tpm=10**9, bucket_seconds=1, latency=Latency.none(), clock=clock) as server:
        assert statuses(client, server, 10) == [200] * 10
        clock.advance(0.25)  # 2.5 requests' worth
        assert statuses(client, server, 2) == [200, 200]
        clock.advance(0.05)  # 0.5 + 0.5
        assert statuses(client, server, 1) == [200]
        clock.advance(100.0)  # refill stops at capacity
        assert statuses(client, server, 11) == [200] * 10 + [429]
        assert server.admitted_count() == 23


def test_headers_are_present_and_sensible(clock: FakeClock, client: httpx.Client) -> None:
    # requests: capacity 10, 10/s; tokens: capacity 10000, 10000/s. Cost: 400 chars -> 100 + 50 = 150.
    payload = body(max_tokens=50)
    chars = sum(len(m["content"]) for m in payload["messages"])
    payload = body(max_tokens=50, pad=400 - chars)
    assert token_cost(payload) == 150
    with RateLimitedOpenAI(rpm=600, tpm=600_000, bucket_seconds=1, latency=Latency.none(), clock=clock) as server:
        first = post(client, server, payload)
        assert first.status_code == 200
        h = first.headers
        assert h["x-ratelimit-limit-requests"] == "600"
        assert h["x-ratelimit-limit-tokens"] == "600000"
        assert h["x-ratelimit-remaining-requests"] == "9"
        assert h["x-ratelimit-remaining-tokens"] == "9850"
        assert h["x-ratelimit-reset-requests"] == "100ms"
        assert h["x-ratelimit-reset-tokens"] == "15ms"
        assert json.loads(first.json()["choices"][0]["message"]["content"]) == build_answer(
            SCHEMA, "a billing question"
        )
        remaining = [int(post(client, server, payload).headers["x-ratelimit-remaining-requests"]) for _ in range(5)]
        assert remaining == [8, 7, 6, 5, 4]
        clock.advance(10)
        full = post(client, server, payload).headers
        assert full["x-ratelimit-remaining-requests"] == "9"  # refilled to 10, minus this one
        # A 429 carries the same headers plus retry-after(-ms).
        for _ in range(9):
            post(client, server, payload)
        limited = post(client, server, payload)
        assert limited.status_code == 429
        for name in ("requests", "tokens"):
            for kind in ("limit", "remaining", "reset"):
                assert f"x-ratelimit-{kind}-{name}" in limited.headers
            assert DURATION_RE.match(limited.headers[f"x-ratelimit-reset-{name}"])
        assert limited.headers["x-ratelimit-remaining-requests"] == "0"
        assert limited.headers["retry-after"] == "1"
        assert limited.headers["retry-after-ms"] == "200"  # level 0, debited to -1: 2 requests' refill
        error = limited.json()["error"]
        assert error["type"] == "requests" and error["code"] == "rate_limit_exceeded"
        assert error["message"].startswith("Rate limit reached for requests")


def test_retry_after_ms_is_the_time_until_admission(clock: FakeClock, client: httpx.Client) -> None:
    # capacity 10, 10/s. After the 429 (debited: level -1) the next request fits in 0.2 s.
    with RateLimitedOpenAI(rpm=600, tpm=10**9, bucket_seconds=1, latency=Latency.none(), clock=clock) as server:
        statuses(client, server, 10)
        clock.advance(0.05)  # level 0.5
        limited = post(client, server)
        assert limited.status_code == 429
        wait_ms = int(limited.headers["retry-after-ms"])
        assert wait_ms == 150  # (1 - (0.5 - 1)) / 10 per second
        clock.advance(wait_ms / 1000 - 0.002)
        early = post(client, server)
        assert early.status_code == 429  # a moment too early (and debited again)
        clock.advance(int(early.headers["retry-after-ms"]) / 1000)
        assert post(client, server).status_code == 200


def test_retry_after_ms_for_tokens(clock: FakeClock, client: httpx.Client) -> None:
    # tokens: capacity 1000, 1000/s; each request costs 600.
    payload = body(max_tokens=600 - token_cost(body(max_tokens=0)))
    assert token_cost(payload) == 600
    with RateLimitedOpenAI(rpm=10**6, tpm=60_000, bucket_seconds=1, latency=Latency.none(), clock=clock) as server:
        assert post(client, server, payload).status_code == 200
        limited = post(client, server, payload)
        assert limited.status_code == 429
        assert limited.json()["error"]["type"] == "tokens"
        assert limited.json()["error"]["message"].startswith("Rate limit reached for tokens")
        assert limited.headers["retry-after-ms"] == "200"  # (600 - 400) / 1000 per second
        assert limited.headers["x-ratelimit-remaining-tokens"] == "400"
        clock.advance(0.2)
        assert post(client, server, payload).status_code == 200
        assert server.stats().rejected_tokens == 1


def test_request_too_large_for_the_token_bucket(clock: FakeClock, client: httpx.Client) -> None:
    with RateLimitedOpenAI(rpm=600, tpm=600, bucket_seconds=1, latency=Latency.none(), clock=clock) as server:
        response = post(client, server, body(max_tokens=None))  # 256 + prompt > 10 tokens of capacity
        assert response.status_code == 429
        assert response.json()["error"]["type"] == "tokens"
        assert "too large" in response.json()["error"]["message"]


def test_failed_requests_count_against_the_request_limit(clock: FakeClock, client: httpx.Client) -> None:
    # capacity 5, 10 per second; every admitted request fails with a 500.
    limits: dict[str, Any] = {"rpm": 600, "tpm": 10**9, "bucket_seconds": 0.5, "latency": Latency.none()}
    with RateLimitedOpenAI(**limits, fault_rates={"500": 1.0}, clock=clock) as server:
        responses = [post(client, server) for _ in range(6)]
        assert [r.status_code for r in responses] == [500] * 5 + [429]
        assert [r.headers["x-ratelimit-remaining-requests"] for r in responses[:5]] == ["4", "3", "2", "1", "0"]
        assert server.stats().faults == {"500": 5}
    # Rejections are debited too: each 429 pushes the next admission 1/rate further away.
    with RateLimitedOpenAI(**limits, clock=clock) as server:
        statuses(client, server, 5)
        waits = [int(post(client, server).headers["retry-after-ms"]) for _ in range(3)]
        assert waits == [200, 300, 400]
        clock.advance(0.35)
        assert post(client, server).status_code == 429
    with RateLimitedOpenAI(**limits, count_rejected=False, clock=clock) as server:
        statuses(client, server, 5)
        waits = [int(post(client, server).headers["retry-after-ms"]) for _ in range(3)]
        assert waits == [100, 100, 100]
        clock.advance(0.1)
        assert post(client, server).status_code == 200


def test_ideal_time() -> None:
    server = RateLimitedOpenAI(rpm=3000, tpm=10**9, bucket_seconds=1)
    assert server.ideal_time(2000) == pytest.approx((2000 - 50) / 50 + 0.2)
    assert RateLimitedOpenAI(rpm=3000, bucket_seconds=5).ideal_time(2000, token_cost=100) == pytest.approx(
        (2000 - 250) / 50 + 0.2
    )
    assert RateLimitedOpenAI(rpm=3000, bucket_seconds=60).ideal_time(2000, token_cost=100) == pytest.approx(0.2)
    # tokens bind: 1000 tokens/s at 100 a request is 10 requests/s, capacity 10 requests.
    tight = RateLimitedOpenAI(rpm=10_000, tpm=60_000, bucket_seconds=1)
    assert tight.ideal_time(100, token_cost=100) == pytest.approx((100 * 100 - 1000) / 1000 + 0.2)


# --------------------------------------------------------------------------- #
# Real clock, faults, records
# --------------------------------------------------------------------------- #


def test_real_time_burst_refill_and_retry_after(client: httpx.Client) -> None:
    # capacity 10, 10 per second, real clock, concurrent burst.
    with RateLimitedOpenAI(rpm=600, tpm=10**9, bucket_seconds=1, latency=Latency.fixed(0.05)) as server:
        with ThreadPoolExecutor(8) as pool:
            codes = list(pool.map(lambda _: post(client, server).status_code, range(14)))
        assert codes.count(200) in (10, 11)  # 10, plus at most one refilled during the burst
        time.sleep(0.5)  # ~5 more, minus the debt of the rejected ones (floored at -10)
        start = time.monotonic()
        limited = post(client, server)
        while limited.status_code == 200 and time.monotonic() - start < 2:
            limited = post(client, server)
        assert limited.status_code == 429
        wait = int(limited.headers["retry-after-ms"]) / 1000
        assert 0 < wait <= 2.1
        time.sleep(wait + 0.02)
        assert post(client, server).status_code == 200
        records = server.records
        assert all(r.latency >= 0.05 for r in records if r.status == 200)
        assert all(r.latency < 0.05 for r in records if r.status == 429)  # rejected at once
        assert server.admitted_count() == sum(r.admitted for r in records)


def test_faults_are_seeded_and_counted(client: httpx.Client) -> None:
    rates = {"500": 0.25, "503": 0.25, "502_html": 0.25}

    def run() -> list[int]:
        with RateLimitedOpenAI(latency=Latency.none(), fault_rates=rates, seed=3) as server:
            codes = statuses(client, server, 40)
            stats = server.stats()
            assert stats.admitted == 40 and stats.fault_count == 40 - stats.ok
            return codes

    codes = run()
    assert codes == run()
    assert {500, 503, 502, 200} <= set(codes)
    with RateLimitedOpenAI(latency=Latency.none(), fault_rates={"502_html": 1.0}) as server:
        response = post(client, server)
        assert response.status_code == 502 and response.headers["content-type"] == "text/html"


def test_hang_holds_then_closes(client: httpx.Client) -> None:
    with RateLimitedOpenAI(latency=Latency.none(), fault_rates={"hang": 1.0}, hang_seconds=0.3) as server:
        start = time.monotonic()
        with pytest.raises(httpx.TransportError):
            post(client, server)
        assert 0.25 <= time.monotonic() - start < 3
        deadline = time.monotonic() + 2
        while not server.records and time.monotonic() < deadline:
            time.sleep(0.01)
        (record,) = server.records
        assert (record.status, record.fault, record.admitted) == (0, "hang", True)
        assert server.admitted_count() == 1


def test_records_and_stats(clock: FakeClock, client: httpx.Client) -> None:
    with RateLimitedOpenAI(rpm=60, tpm=10**9, bucket_seconds=1, latency=Latency.none(), clock=clock) as server:
        post(client, server, body("first"))
        clock.advance(1.0)
        post(client, server, body("second"))
        post(client, server, body("third"))
        first, second, third = server.records
        assert (first.text, first.arrival, first.admitted, first.status) == ("first", 0.0, True, 200)
        assert (second.arrival, second.admitted) == (1.0, True)
        assert (third.status, third.admitted, third.limited_by) == (429, False, "requests")
        assert first.tokens == token_cost(body("first"))
        stats = server.stats()
        assert (stats.requests, stats.admitted, stats.ok, stats.rejected) == (3, 2, 2, 1)
        assert stats.as_dict()["fault_count"] == 0
        server.reset()
        assert server.records == [] and server.admitted_count() == 0


def test_bad_requests_and_auth_are_not_counted(client: httpx.Client) -> None:
    with RateLimitedOpenAI(latency=Latency.none(), api_key="k") as server:
        assert client.post(server.base_url + "/chat/completions", json=body()).status_code == 401
        headers = {"Authorization": "Bearer k"}
        assert client.post(server.base_url + "/chat/completions", json={}, headers=headers).status_code == 400
        assert client.get(server.base_url + "/models").status_code == 200
        ok = client.post(server.base_url + "/chat/completions", json=body(), headers=headers)
        assert ok.status_code == 200
        assert server.admitted_count() == 1 and server.arrivals() == 1


def test_cli_serves_then_exits(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--rpm", "600", "--tpm", "200000", "--bucket", "5", "--port", "0", "--duration", "0.1"]) == 0
    url, stats = capsys.readouterr().out.strip().splitlines()
    assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
    assert json.loads(stats)["requests"] == 0
