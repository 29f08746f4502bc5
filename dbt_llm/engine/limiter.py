"""Adaptive pacing for one (endpoint, model): request and token budgets learned from
`x-ratelimit-*` headers (limits and remaining, or remaining alone) and 429s, even pacing instead of
burst-then-pause, and a concurrency limit that grows while answers come back clean and shrinks on 429s."""

from __future__ import annotations

import asyncio
import time
from collections import deque

from ..providers.rate_headers import RateHeaders

MIN_TIMEOUT = 2.0  # seconds: never cut a request sooner, however fast the recent ones were


class _Bucket:
    """Our estimate of one provider bucket. Unknown until the provider tells us."""

    def __init__(self, ceiling_per_minute: float | None) -> None:
        self.ceiling = ceiling_per_minute / 60 if ceiling_per_minute else None
        self.rate: float | None = self.ceiling  # units per second
        self.level: float | None = None
        self.stamp = time.monotonic()
        # Remaining-only headers (Azure OpenAI): the most ever seen left, the refill measured between
        # two reports, and the last report (time, remaining, units the provider had counted by then).
        self.peak = 0.0
        self.refilled = 0.0
        self._report: tuple[float, float, float] | None = None

    @property
    def capacity(self) -> float:
        """What the bucket holds at most: what remaining-only headers showed, else a minute's worth."""
        return self.peak or (self.rate or 0.0) * 60

    def _refresh(self, now: float) -> None:
        if self.rate is not None and self.level is not None:
            self.level = min(self.level + (now - self.stamp) * self.rate, self.capacity)
        self.stamp = now

    def learn(
        self, limit: float | None, remaining: float | None, unseen: float, now: float, counted: float | None = None
    ) -> None:
        """`counted`: how many units the provider had counted when it said `remaining` (for requests, the
        send number of the request it answered), so that the refill between two reports can be measured."""
        if not limit and remaining is not None:
            # The most ever seen left, plus what was in flight and this request, is the least the bucket
            # holds. It refills at least that much a minute; faster when measured so (Azure counts
            # requests over windows shorter than a minute).
            self.peak = max(self.peak, remaining + unseen + 1)
            limit = max(self.peak, self._refill(remaining, counted, now) * 60)
        if limit:
            rate = limit / 60
            self.rate = min(rate, self.ceiling) if self.ceiling else rate
        if remaining is not None:
            # The provider counted what it had admitted; requests sent after this one are not in it yet.
            self.level = max(0.0, remaining - unseen)
            self.stamp = now

    def _refill(self, remaining: float, counted: float | None, now: float) -> float:
        """Units a second the provider added between two reports at least a second apart: what it had
        left more, plus what it admitted in between. Not measured while the bucket is near full (a full
        bucket stops refilling, which would hide the rate)."""
        if counted is None:
            return self.refilled
        if self._report is not None and now - self._report[0] < 1.0:
            return self.refilled
        if self._report is not None:
            then, left, before = self._report
            if max(left, remaining) < 0.9 * self.peak:
                self.refilled = max(0.0, (remaining - left + counted - before) / (now - then))
        self._report = (now, remaining, counted)
        return self.refilled

    def slow_down(self, observed_rate: float) -> None:
        """A 429 with no headers to learn from: pace a little under what got through."""
        if observed_rate > 0:
            self.rate = min(self.rate or observed_rate, observed_rate * 0.9)
            self.level = 0.0

    def wait(self, cost: float, now: float) -> float:
        if self.rate is None:
            return 0.0
        self._refresh(now)
        if self.level is None:
            # A configured ceiling with nothing learned yet: start from an empty bucket, pace evenly.
            self.level = 0.0
        # The bucket holds its capacity at most: a bigger request (a large pack) goes once it is full.
        cost = min(cost, self.capacity)
        return 0.0 if self.level >= cost else (cost - self.level) / self.rate

    def take(self, cost: float, now: float) -> None:
        if self.rate is not None and self.level is not None:
            self._refresh(now)
            self.level -= cost


class Limiter:
    def __init__(
        self,
        max_concurrency: int,
        *,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        start_concurrency: int = 8,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.limit = float(min(max_concurrency, start_concurrency))
        self.requests = _Bucket(requests_per_minute)
        self.tokens = _Bucket(tokens_per_minute)
        self.in_flight = 0
        self.sent = 0
        self.rate_limited = 0
        self._pause_until = 0.0
        self._last_cut = 0.0
        self._slow_start = True  # grow by one slot per clean answer until the first 429
        self._done: deque[float] = deque(maxlen=512)  # completion times, for the observed rate
        self._latencies: deque[float] = deque(maxlen=200)
        self._changed = asyncio.Event()
        self._turn = asyncio.Lock()
        self._slot_wanted = False  # a request is waiting for a free slot

    def observed_rate(self, window: float = 10.0) -> float:
        now = time.monotonic()
        recent = [t for t in self._done if now - t <= window]
        return len(recent) / window if recent else 0.0

    def timeout(self, ceiling: float) -> float:
        """Cut a request that takes far longer than the recent p99 (once there is a p99 to go by):
        a hung connection then costs a few seconds of one slot, not the configured ceiling."""
        if len(self._latencies) < 20:
            return ceiling
        ordered = sorted(self._latencies)
        p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
        return min(ceiling, max(MIN_TIMEOUT, 4 * p99))

    async def acquire(self, tokens: float) -> int:
        """Wait for a slot, a request and the tokens; returns the request's send number.

        Callers queue in FIFO order on a lock and only the head waits for the conditions: with
        thousands of requests queued, a released slot wakes one coroutine, not all of them."""
        async with self._turn:
            while True:
                now = time.monotonic()
                wait = max(
                    self._pause_until - now,
                    self.requests.wait(1, now),
                    self.tokens.wait(tokens, now),
                )
                if self.in_flight >= int(self.limit):
                    self._changed.clear()
                    self._slot_wanted = True
                    await self._changed.wait()
                    self._slot_wanted = False
                elif wait > 0:
                    await asyncio.sleep(min(wait, 1.0))
                else:
                    self.requests.take(1, now)
                    self.tokens.take(tokens, now)
                    self.in_flight += 1
                    self.sent += 1
                    return self.sent

    def cancel(self, tokens: float) -> None:
        """Give back an acquired slot whose request was not sent, and what it took from the budgets."""
        now = time.monotonic()
        self.in_flight -= 1
        self.requests.take(-1, now)
        self.tokens.take(-tokens, now)
        self._changed.set()

    def release(
        self,
        seq: int,
        *,
        ok: bool,
        rate_limited: bool = False,
        retry_after: float | None = None,
        headers: RateHeaders | None = None,
        latency: float | None = None,
    ) -> None:
        now = time.monotonic()
        self.in_flight -= 1
        unseen = self.sent - seq
        if headers is not None:
            self.requests.learn(headers.limit_requests, headers.remaining_requests, unseen, now, counted=seq)
            self.tokens.learn(headers.limit_tokens, headers.remaining_tokens, 0.0, now)
        if ok:
            self._done.append(now)
            if latency is not None:
                self._latencies.append(latency)
            # Grow only when the slots were the limit (all in use): while pacing or a short queue
            # binds, more slots would just be idle connections.
            if self._slot_wanted or self.in_flight + 1 >= int(self.limit):
                step = 1.0 if self._slow_start else 1 / self.limit
                self.limit = min(float(self.max_concurrency), self.limit + step)
        elif rate_limited:
            self.rate_limited += 1
            if retry_after:
                self._pause_until = max(self._pause_until, now + retry_after)
            self._slow_start = False
            if now - self._last_cut > 1.0:  # one cut per burst of 429s
                self._last_cut = now
                self.limit = max(1.0, self.limit * 0.7)
                if headers is None or headers.limit_requests is None:
                    self.requests.slow_down(self.observed_rate())
        self._changed.set()
