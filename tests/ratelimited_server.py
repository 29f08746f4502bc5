"""A local OpenAI-compatible chat-completions server that enforces provider-like rate limits.

``RateLimitedOpenAI`` answers ``POST /v1/chat/completions`` (and ``GET /v1/models``) with the
same deterministic, schema-valid answers as ``FakeOpenAI`` (``build_answer``), but behaves
like a rate-limited provider:

- **Latency**: each admitted request takes ``normal(mean=0.2, sd=0.05)`` seconds, clipped to
  ``[0.05, 0.5]`` (seeded).  Rejections (429) are answered at once.
- **Limits**: a request limit ``rpm`` and a token limit ``tpm``, each a token bucket of
  capacity ``limit * bucket_seconds / 60`` that refills continuously at ``limit / 60`` per
  second and starts full.  ``bucket_seconds=60`` allows a burst of a whole minute's quota;
  ``bucket_seconds=1`` allows a burst of only ``rpm / 60`` requests.
- **Cost** of a request in tokens: ``ceil(characters of all messages / 4)`` plus its
  ``max_tokens`` (or ``max_completion_tokens``; 256 if absent), the reservation real
  providers make before generating.
- **Admission** happens on arrival.  A request is admitted when the request bucket holds one
  request and the token bucket holds its cost; both are debited.  Otherwise it gets a 429 with
  ``{"error": {"message": "Rate limit reached for requests ...", "type": "requests",
  "code": "rate_limit_exceeded"}}`` (or ``tokens``), ``retry-after`` (whole seconds, rounded
  up) and ``retry-after-ms`` (time until both buckets hold enough for this request).  A
  rejected request is still debited one request (``count_rejected``), like providers count
  failed requests; the request bucket may go into debt down to ``-capacity``, so hammering a
  limited server pushes the next admission further away.  ``retry-after-ms`` is computed after
  that debit: it is the time at which a retry of this very request would be admitted if no
  other request came in between.  Admitted requests that then fail (faults) were debited too.
- **Headers** on every 200 and 429: ``x-ratelimit-limit-requests`` / ``-tokens`` (the per-minute
  limits), ``x-ratelimit-remaining-requests`` / ``-tokens`` (whole units left, never negative)
  and ``x-ratelimit-reset-requests`` / ``-tokens`` (time until the bucket is full again, in
  OpenAI's Go-duration style: ``"120ms"``, ``"1s"``, ``"1.5s"``, ``"6m0s"``), as of admission.
- **Faults** (seeded, one draw per admitted request): ``"500"``, ``"503"``, ``"502_html"`` (an
  HTML gateway page) and ``"hang"`` (hold the connection ``hang_seconds`` without answering,
  then close it).

Every request is recorded (``records``): arrival time, admitted, status, latency, token cost.
``ideal_time(n)`` is the fastest any client could get ``n`` requests admitted and answered:
``(n - capacity) / rate + mean latency`` for the tighter of the two limits.

Usage::

    with RateLimitedOpenAI(rpm=3000, tpm=1_000_000, bucket_seconds=1) as server:
        client = OpenAI(base_url=server.base_url, api_key="x")
        ...
        print(server.stats(), server.ideal_time(2000))

It only binds ``127.0.0.1``.  By hand:
``python tests/ratelimited_server.py --rpm 600 --tpm 200000 --bucket 5 --port 0``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from _fake_http import (
    MODEL_ID,
    FakeHandler,
    FakeService,
    Reply,
    chat_completion,
    error_body,
    estimate_tokens,
    load_json,
    message_chars,
    response_format,
    server_fault_reply,
)
from openai_server import build_answer, extract_input_text

__all__ = [
    "DEFAULT_MAX_TOKENS",
    "FAULTS",
    "Latency",
    "RateLimitedOpenAI",
    "RequestRecord",
    "ServerStats",
    "TokenBucket",
    "format_duration",
    "message_chars",
    "token_cost",
]

FAULTS: tuple[str, ...] = ("500", "503", "502_html", "hang")
DEFAULT_MAX_TOKENS = 256
MAX_BODY_BYTES = 16 * 1024 * 1024


# --------------------------------------------------------------------------- #
# Pure helpers: durations, token cost, latency, buckets
# --------------------------------------------------------------------------- #


def format_duration(seconds: float) -> str:
    """A duration the way OpenAI's ``x-ratelimit-reset-*`` headers write it (Go style).

    Rounded up to the millisecond: ``0`` -> ``"0s"``, ``0.12`` -> ``"120ms"``, ``1`` -> ``"1s"``,
    ``1.5`` -> ``"1.5s"``, ``360`` -> ``"6m0s"``, ``3723.25`` -> ``"1h2m3.25s"``.
    """
    if not math.isfinite(seconds):
        raise ValueError(f"not a finite duration: {seconds!r}")
    ms = _ceil_ms(seconds)
    if ms == 0:
        return "0s"
    if ms < 1000:
        return f"{ms}ms"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs = f"{rest / 1000:.3f}".rstrip("0").rstrip(".")
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    if minutes:
        return f"{minutes}m{secs}s"
    return f"{secs}s"


def _ceil_ms(seconds: float) -> int:
    """Whole milliseconds, rounded up (ignoring float noise below a nanosecond)."""
    return math.ceil(round(max(0.0, seconds) * 1000, 6))


def token_cost(body: Mapping[str, Any]) -> int:
    """Tokens a request reserves: ``ceil(message characters / 4)`` + its max output tokens."""
    prompt = math.ceil(message_chars(body.get("messages")) / 4)
    limit: Any = body.get("max_tokens")
    if limit is None:
        limit = body.get("max_completion_tokens")
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 0:
        limit = DEFAULT_MAX_TOKENS
    return prompt + int(limit)


@dataclass(frozen=True)
class Latency:
    """Seconds an admitted request takes: ``normal(mean, sd)`` clipped to ``[low, high]``."""

    mean: float = 0.2
    sd: float = 0.05
    low: float = 0.05
    high: float = 0.5

    def __post_init__(self) -> None:
        if self.sd < 0 or self.low < 0 or self.high < self.low:
            raise ValueError(f"bad latency model {self!r}")

    @classmethod
    def none(cls) -> Latency:
        return cls(0.0, 0.0, 0.0, 0.0)

    @classmethod
    def fixed(cls, seconds: float) -> Latency:
        return cls(seconds, 0.0, seconds, seconds)

    @property
    def expected(self) -> float:
        """The mean used by ``ideal_time`` (the clipping is symmetric enough to ignore)."""
        return min(self.high, max(self.low, self.mean))

    def sample(self, rng: random.Random) -> float:
        value = rng.gauss(self.mean, self.sd) if self.sd > 0 else self.mean
        return min(self.high, max(self.low, value))


class TokenBucket:
    """A continuously refilling token bucket on an external clock (not thread-safe).

    ``capacity = max(1, limit * bucket_seconds / 60)``, refill ``limit / 60`` per second, starts
    full.  ``take`` may push the level below zero, down to ``-max_debt`` (default: capacity).
    """

    def __init__(
        self,
        limit_per_minute: float,
        bucket_seconds: float,
        now: float,
        *,
        max_debt: float | None = None,
    ) -> None:
        if not limit_per_minute > 0 or not bucket_seconds > 0:
            raise ValueError("limit_per_minute and bucket_seconds must be > 0")
        self.limit = float(limit_per_minute)
        self.bucket_seconds = float(bucket_seconds)
        self.rate = self.limit / 60.0
        self.capacity = max(1.0, self.limit * self.bucket_seconds / 60.0)
        self.max_debt = self.capacity if max_debt is None else max(0.0, max_debt)
        self._level = self.capacity
        self._updated = now

    def level(self, now: float) -> float:
        if now > self._updated:
            self._level = min(self.capacity, self._level + (now - self._updated) * self.rate)
            self._updated = now
        return self._level

    def has(self, amount: float, now: float) -> bool:
        return self.level(now) >= amount - 1e-9

    def take(self, amount: float, now: float) -> None:
        self._level = max(-self.max_debt, self.level(now) - amount)

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until the bucket holds ``amount`` (``inf`` if it never can)."""
        if amount > self.capacity + 1e-9:
            return math.inf
        return max(0.0, (amount - self.level(now)) / self.rate)

    def remaining(self, now: float) -> int:
        return max(0, math.floor(self.level(now) + 1e-9))

    def reset_after(self, now: float) -> float:
        """Seconds until the bucket is full again."""
        return max(0.0, (self.capacity - self.level(now)) / self.rate)


# --------------------------------------------------------------------------- #
# Records and stats
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RequestRecord:
    """One chat-completions request as the server saw it."""

    arrival: float  # seconds since start(), on the server's clock
    admitted: bool
    status: int  # 200, 429, 500, 502, 503; 0 for a hang (closed without an answer); 400/401
    latency: float  # wall seconds from arrival to the answer (or to closing a hang)
    tokens: int  # the request's token cost (prompt estimate + max tokens)
    fault: str | None = None
    limited_by: str | None = None  # "requests" or "tokens" for a 429
    text: str = ""


@dataclass(frozen=True)
class ServerStats:
    requests: int  # chat-completions requests answered or closed so far
    admitted: int
    ok: int  # 200s
    rejected: int  # 429s
    rejected_requests: int
    rejected_tokens: int
    faults: dict[str, int] = field(default_factory=dict)  # admitted requests drawn to fail, by kind (hangs held too)
    mean_tokens: float = 0.0  # mean token cost of all recorded requests
    mean_latency: float = 0.0  # mean latency of the 200s
    first_arrival: float = 0.0
    last_done: float = 0.0  # the latest arrival + latency
    max_inflight: int = 0  # most requests the server held at once
    busy: float = 0.0  # sum of all recorded latencies: busy / span is the mean number in flight

    @property
    def fault_count(self) -> int:
        return sum(self.faults.values())

    @property
    def span(self) -> float:
        return max(0.0, self.last_done - self.first_arrival)

    @property
    def mean_inflight(self) -> float:
        return self.busy / self.span if self.span > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        extra = {"fault_count": self.fault_count, "span": self.span, "mean_inflight": self.mean_inflight}
        return {**self.__dict__, **extra}


# --------------------------------------------------------------------------- #
# The server
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Decision:
    admitted: bool
    cost: int
    arrival: float
    headers: dict[str, str]
    limited_by: str | None = None
    wait: float = 0.0
    fault: str | None = None
    latency: float = 0.0


class _Handler(FakeHandler):
    server_version = "RateLimitedOpenAI/1.0"
    owned_by = "fake"
    unknown_url_code = None
    models_need_auth = False
    bad_body_message = "Bad Content-Length"
    max_body_bytes = MAX_BODY_BYTES


class RateLimitedOpenAI(FakeService):
    """A local OpenAI-compatible server with request and token rate limits (see module docs)."""

    _handler = _Handler
    _queue_size = 512
    _thread_name = "ratelimited-openai"

    def __init__(
        self,
        *,
        rpm: int = 3000,
        tpm: int = 1_000_000,
        bucket_seconds: float = 60.0,
        latency: Latency | None = None,
        fault_rates: Mapping[str, float] | None = None,
        hang_seconds: float = 30.0,
        seed: int = 0,
        count_rejected: bool = True,
        api_key: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rpm <= 0 or tpm <= 0 or bucket_seconds <= 0:
            raise ValueError("rpm, tpm and bucket_seconds must be > 0")
        self.rpm = rpm
        self.tpm = tpm
        self.bucket_seconds = float(bucket_seconds)
        self.latency = Latency() if latency is None else latency
        self.seed = seed
        self.count_rejected = count_rejected
        self._clock = clock
        self._fault_rates = self._check_rates(fault_rates or {})
        super().__init__(api_key=api_key, hang_seconds=hang_seconds)
        self._reset_state()

    @staticmethod
    def _check_rates(rates: Mapping[str, float]) -> dict[str, float]:
        for kind, rate in rates.items():
            if kind not in FAULTS:
                raise ValueError(f"unknown fault {kind!r}; expected one of {FAULTS}")
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"fault rate of {kind!r} must be in [0, 1]")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates sum to more than 1")
        return {k: float(v) for k, v in rates.items() if v > 0}

    def _reset_state(self) -> None:
        now = self._clock()
        self._t0 = now
        self.request_bucket = TokenBucket(self.rpm, self.bucket_seconds, now)
        self.token_bucket = TokenBucket(self.tpm, self.bucket_seconds, now)
        self._fault_rng = random.Random(self.seed)
        self._latency_rng = random.Random(self.seed + 1)
        self._records: list[RequestRecord] = []
        self._arrivals = 0
        self._admitted = 0
        self._inflight = 0
        self._max_inflight = 0
        self._faults: dict[str, int] = {}

    # -- lifecycle ---------------------------------------------------------- #

    def _starting(self) -> None:
        """The buckets start full when the server starts."""
        self.reset()

    def reset(self) -> None:
        """Forget records, refill both buckets and re-seed the random draws (call it when idle)."""
        with self._lock:
            self._reset_state()

    def set_fault_rates(self, rates: Mapping[str, float]) -> None:
        checked = self._check_rates(rates)
        with self._lock:
            self._fault_rates = checked

    # -- limits ------------------------------------------------------------- #

    @property
    def origin(self) -> float:
        """The clock reading at ``start()`` / ``reset()``; record arrivals are seconds after it."""
        with self._lock:
            return self._t0

    @property
    def request_capacity(self) -> float:
        return self.request_bucket.capacity

    @property
    def token_capacity(self) -> float:
        return self.token_bucket.capacity

    def ideal_time(self, n_requests: int, token_cost: float | None = None) -> float:
        """Fastest possible time to get ``n_requests`` admitted and answered, from full buckets.

        ``(n - capacity) / rate + mean latency`` for the request limit and, when tighter, for the
        token limit with ``token_cost`` tokens per request (default: the mean cost recorded so
        far; the token limit is ignored when nothing is recorded and no cost is given).
        """
        if n_requests <= 0:
            return 0.0
        seconds = max(0.0, n_requests - self.request_bucket.capacity) / self.request_bucket.rate
        if token_cost is None:
            with self._lock:
                costs = [r.tokens for r in self._records]
            token_cost = sum(costs) / len(costs) if costs else None
        if token_cost is not None and token_cost > 0:
            by_tokens = max(0.0, n_requests * token_cost - self.token_bucket.capacity) / self.token_bucket.rate
            seconds = max(seconds, by_tokens)
        return seconds + self.latency.expected

    # -- records -------------------------------------------------------------- #

    @property
    def records(self) -> list[RequestRecord]:
        """A copy of every finished chat request, in completion order."""
        with self._lock:
            return list(self._records)

    def admitted_count(self) -> int:
        """Requests admitted so far (including ones still being answered)."""
        with self._lock:
            return self._admitted

    def arrivals(self) -> int:
        """Chat requests received so far that reached admission (including ones in flight)."""
        with self._lock:
            return self._arrivals

    def stats(self) -> ServerStats:
        with self._lock:
            records = list(self._records)
            admitted, max_inflight, faults = self._admitted, self._max_inflight, dict(self._faults)
        oks = [r for r in records if r.status == 200]
        return ServerStats(
            requests=len(records),
            admitted=admitted,
            ok=len(oks),
            rejected=sum(r.status == 429 for r in records),
            rejected_requests=sum(r.limited_by == "requests" for r in records),
            rejected_tokens=sum(r.limited_by == "tokens" for r in records),
            faults=faults,
            mean_tokens=sum(r.tokens for r in records) / len(records) if records else 0.0,
            mean_latency=sum(r.latency for r in oks) / len(oks) if oks else 0.0,
            first_arrival=min((r.arrival for r in records), default=0.0),
            last_done=max((r.arrival + r.latency for r in records), default=0.0),
            max_inflight=max_inflight,
            busy=sum(r.latency for r in records),
        )

    # -- internals ------------------------------------------------------------ #

    def _headers(self, now: float) -> dict[str, str]:
        r, t = self.request_bucket, self.token_bucket
        return {
            "x-ratelimit-limit-requests": str(self.rpm),
            "x-ratelimit-remaining-requests": str(r.remaining(now)),
            "x-ratelimit-reset-requests": format_duration(r.reset_after(now)),
            "x-ratelimit-limit-tokens": str(self.tpm),
            "x-ratelimit-remaining-tokens": str(t.remaining(now)),
            "x-ratelimit-reset-tokens": format_duration(t.reset_after(now)),
        }

    def _admit(self, cost: int) -> _Decision:
        with self._lock:
            now = self._clock()
            arrival = now - self._t0
            self._arrivals += 1
            r, t = self.request_bucket, self.token_bucket
            has_request, has_tokens = r.has(1, now), t.has(cost, now)
            if has_request and has_tokens:
                r.take(1, now)
                t.take(cost, now)
                self._admitted += 1
                self._inflight += 1
                self._max_inflight = max(self._max_inflight, self._inflight)
                fault: str | None = None
                if self._fault_rates:
                    draw, cumulative = self._fault_rng.random(), 0.0
                    for kind, rate in self._fault_rates.items():
                        cumulative += rate
                        if draw < cumulative:
                            fault = kind
                            self._faults[kind] = self._faults.get(kind, 0) + 1
                            break
                latency = self.latency.sample(self._latency_rng)
                return _Decision(True, cost, arrival, self._headers(now), fault=fault, latency=latency)
            limited_by = "requests" if not has_request else "tokens"
            if self.count_rejected:
                r.take(1, now)
            wait = max(r.wait_for(1, now), t.wait_for(cost, now))
            return _Decision(False, cost, arrival, self._headers(now), limited_by=limited_by, wait=wait)

    def _finish(self, record: RequestRecord) -> None:
        with self._lock:
            self._records.append(record)
            if record.admitted:
                self._inflight = max(0, self._inflight - 1)

    def _handle_chat(self, handler: FakeHandler, raw: bytes) -> None:
        started = time.monotonic()
        body = load_json(raw)
        messages: Any = body.get("messages") if isinstance(body, dict) else None
        if not isinstance(body, dict) or not isinstance(messages, list) or not messages:
            handler.send_body(400, error_body("'messages' is a required property", "invalid_request_error", None))
            return
        if not handler.authorized():
            handler.send_unauthorized()
            return
        text = extract_input_text(messages)
        decision = self._admit(token_cost(body))

        def record(status: int) -> None:
            self._finish(
                RequestRecord(
                    arrival=decision.arrival,
                    admitted=decision.admitted,
                    status=status,
                    latency=time.monotonic() - started,
                    tokens=decision.cost,
                    fault=decision.fault,
                    limited_by=decision.limited_by,
                    text=text,
                )
            )

        # Recorded before the reply is written, so a client that has its answer sees the record.
        if not decision.admitted:
            reply = self._reject(decision, body)
        elif decision.fault == "hang":
            self._hang(handler)
            record(0)
            return
        else:
            if decision.latency > 0:
                self._stopping.wait(decision.latency)
            reply = self._answer(decision, body, text)
        record(reply.status)
        try:
            handler.send_reply(reply)
        except OSError:
            handler.close_connection = True  # the client went away

    def _reject(self, decision: _Decision, body: dict[str, Any]) -> Reply:
        kind = decision.limited_by or "requests"
        model = str(body.get("model") or MODEL_ID)
        if math.isinf(decision.wait):
            message = (
                f"Request too large for {model} on tokens per min (TPM): Limit {self.tpm}, "
                f"Requested {decision.cost}. Use a shorter input or a smaller max_tokens."
            )
            wait_ms = _ceil_ms(self.bucket_seconds)
        else:
            wait_ms = max(1, _ceil_ms(decision.wait))
            unit = "RPM" if kind == "requests" else "TPM"
            limit = self.rpm if kind == "requests" else self.tpm
            message = (
                f"Rate limit reached for {kind} per min ({unit}) on {model}: Limit {limit}, "
                f"Requested {1 if kind == 'requests' else decision.cost}. "
                f"Please try again in {format_duration(wait_ms / 1000)}."
            )
        headers = {
            **decision.headers,
            "retry-after": str(max(1, math.ceil(wait_ms / 1000))),
            "retry-after-ms": str(wait_ms),
        }
        return Reply(429, error_body(message, kind, "rate_limit_exceeded"), headers)

    def _answer(self, decision: _Decision, body: dict[str, Any], text: str) -> Reply:
        fault = server_fault_reply(decision.fault, decision.headers)
        if fault is not None:
            return fault
        schema, wants_json = response_format(body)
        content = "{}" if wants_json else "ok"
        if schema is not None:
            content = json.dumps(build_answer(schema, text))
        response = chat_completion(
            f"chatcmpl-rl-{self._next_id()}",
            str(body.get("model") or MODEL_ID),
            content,
            finish_reason="stop",
            prompt_tokens=estimate_tokens(message_chars(body.get("messages"))),
            completion_tokens=estimate_tokens(len(content)),
        )
        return Reply(200, response, decision.headers)


def _parse_fault(value: str) -> tuple[str, float]:
    kind, _, rate = value.partition("=")
    if kind not in FAULTS or not rate:
        raise argparse.ArgumentTypeError(f"expected KIND=RATE with KIND in {FAULTS}, got {value!r}")
    try:
        return kind, float(rate)
    except ValueError:
        raise argparse.ArgumentTypeError(f"bad rate in {value!r}") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Rate-limited fake OpenAI chat-completions server (127.0.0.1 only).")
    parser.add_argument("--rpm", type=int, default=3000, help="requests per minute")
    parser.add_argument("--tpm", type=int, default=1_000_000, help="tokens per minute")
    parser.add_argument("--bucket", type=float, default=60.0, help="bucket size in seconds of quota (60, 5, 1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (0: a free one)")
    parser.add_argument("--latency-mean", type=float, default=0.2)
    parser.add_argument("--latency-sd", type=float, default=0.05)
    parser.add_argument("--fault", type=_parse_fault, action="append", default=[], help="e.g. --fault 500=0.02")
    parser.add_argument("--hang-seconds", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")
    parser.add_argument("--duration", type=float, default=3600.0, help="serve this many seconds, then exit")
    args = parser.parse_args(argv)

    latency = Latency(args.latency_mean, args.latency_sd, min(0.05, args.latency_mean), max(0.5, args.latency_mean))
    server = RateLimitedOpenAI(
        rpm=args.rpm,
        tpm=args.tpm,
        bucket_seconds=args.bucket,
        latency=latency,
        fault_rates=dict(args.fault),
        hang_seconds=args.hang_seconds,
        seed=args.seed,
        api_key=args.api_key,
    ).start(port=args.port)
    print(server.base_url, flush=True)
    try:
        threading.Event().wait(max(0.0, args.duration))
    except KeyboardInterrupt:
        pass
    finally:
        print(json.dumps(server.stats().as_dict()), flush=True)
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
