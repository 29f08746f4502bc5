"""The engine without dbt or HTTP: a fake Provider answers from the request, so retries, truncation,
row_timeout, the budget, deduplication of keys in flight and the prefetch queue are checked one at a
time. Outages (the probe, streaks of 5xx) are test_outage.py's."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from dbt_llm.engine import Budget, Engine, EngineSettings, Outcome, Pending, Request
from dbt_llm.errors import ConfigError, ProviderError
from dbt_llm.functions.tasks import build_task, cache_key
from dbt_llm.pricing import Price, PriceTable
from dbt_llm.providers.base import Completion, FatalProviderError, RowError, TransientError, Usage

MODEL = "m"
TASK = build_task(
    {"function": "classify", "labels": ["billing", "bug"]}, provider="fake", default_model=MODEL, temperature=0.0
)
USAGE = Usage(5, 2)  # below the engine's estimate of a classify request: reservations cover the real cost


def answer(content: str | None = '{"label": "bug"}', finish: str = "stop", usage: Usage = USAGE) -> Completion:
    return Completion(content, finish, usage)


INVALID = answer('{"label": "not a label"}')

Step = Completion | Exception


@dataclass(frozen=True)
class Call:
    text: str
    max_tokens: int


class FakeProvider:
    """The Provider protocol. Each request for a text gets the next step of `script[text]` (a
    Completion, or an exception to raise); a text with no step left gets a valid answer. While
    `gate` is clear, requests are held in flight (the call is recorded first)."""

    name = "fake"

    def __init__(self, script: dict[str, list[Step]] | None = None, gate: threading.Event | None = None) -> None:
        self.script = {text: list(steps) for text, steps in (script or {}).items()}
        self.gate = gate
        self.calls: list[Call] = []

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        response_format: dict[str, Any],
        max_tokens: int,
        temperature: float,
        top_logprobs: int | None = None,
    ) -> Completion:
        text = messages[-1]["content"].split("<input>\n", 1)[1].split("\n</input>", 1)[0]
        self.calls.append(Call(text, max_tokens))
        while self.gate is not None and not self.gate.is_set():
            await asyncio.sleep(0.001)
        steps = self.script.get(text)
        step = steps.pop(0) if steps else answer()
        if isinstance(step, Exception):
            raise step
        return step

    async def aclose(self) -> None:
        pass

    def texts(self) -> list[str]:
        return [c.text for c in self.calls]


@pytest.fixture
def engines() -> Iterator[Callable[..., Engine]]:
    """Engines on a fake provider, closed after the test."""
    made: list[Engine] = []

    def make(provider: FakeProvider, *, prices: PriceTable | None = None, **settings: Any) -> Engine:
        settings = {"max_concurrency": 8, "max_attempts": 3, **settings}
        engine = Engine(lambda: provider, prices=prices or PriceTable(free=True), settings=EngineSettings(**settings))
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def request(text: str, budget: Budget | None = None) -> Request:
    return Request(cache_key(TASK.spec_hash, text), TASK, text, budget or Budget(None))


def run_one(engine: Engine, text: str) -> Outcome:
    [outcome] = engine.run([request(text)], lambda _o: None)
    assert engine.limiter(MODEL).in_flight == 0  # every path gave its slot back, once
    return outcome


def until(condition: Callable[[], bool]) -> None:
    """Wait for something the engine's thread does (a hang guard, not a measure of time)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the engine never got there"
        time.sleep(0.001)


def test_an_invalid_answer_is_retried_and_a_valid_one_ends_the_row(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider({"t": [INVALID, answer('{"label": "billing"}')]})
    outcome = run_one(engines(provider), "t")
    assert (outcome.result, outcome.error_kind, outcome.attempts) == ('{"label":"billing"}', None, 2)
    assert outcome.usage == USAGE + USAGE  # the invalid answer was billed too


def test_invalid_answers_up_to_max_attempts_fail_the_row_as_invalid_answer(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider({"t": [INVALID] * 5})
    outcome = run_one(engines(provider, max_attempts=3), "t")
    assert (outcome.ok, outcome.error_kind, outcome.attempts, len(provider.calls)) == (False, "invalid_answer", 3, 3)
    assert "does not fit the schema" in (outcome.error or "")


def test_a_refusal_is_an_invalid_answer(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider({"t": [answer(None, "refusal")] * 2})
    outcome = run_one(engines(provider, max_attempts=2), "t")
    assert (outcome.error_kind, outcome.error) == ("invalid_answer", "the model refused to answer")


@pytest.mark.parametrize("kind", ["server_error", "rate_limited", "timeout", "bad_response"])
def test_transient_errors_are_retried_up_to_max_attempts(engines: Callable[..., Engine], kind: str) -> None:
    # retry_after=0: no backoff sleep. One row failing is no outage: each failure counts.
    provider = FakeProvider({"t": [TransientError(kind, "HTTP 5xx", retry_after=0.0)] * 5})
    outcome = run_one(engines(provider, max_attempts=3), "t")
    assert (outcome.error_kind, outcome.attempts, len(provider.calls)) == ("retries_exhausted", 3, 3)
    assert outcome.error == f"{kind}: HTTP 5xx"
    assert outcome.rate_limited == (3 if kind == "rate_limited" else 0)


def test_a_transient_error_then_an_answer(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider({"t": [TransientError("rate_limited", "HTTP 429", retry_after=0.0)]})
    outcome = run_one(engines(provider), "t")
    assert (outcome.ok, outcome.attempts, outcome.rate_limited, outcome.usage) == (True, 2, 1, USAGE)


def test_a_truncated_answer_is_retried_with_max_tokens_doubled(engines: Callable[..., Engine]) -> None:
    cut = answer('{"label": "bu', "length")
    provider = FakeProvider({"t": [cut, cut, answer()]})
    outcome = run_one(engines(provider, max_attempts=3), "t")
    assert (outcome.ok, outcome.truncated, outcome.attempts) == (True, 2, 3)
    assert [c.max_tokens for c in provider.calls] == [TASK.max_tokens, 2 * TASK.max_tokens, 4 * TASK.max_tokens]


def test_a_truncated_answer_at_max_attempts_says_where_it_was_cut(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider({"t": [answer('{"label"', "length")] * 2})
    outcome = run_one(engines(provider, max_attempts=2), "t")
    assert outcome.error_kind == "invalid_answer"
    assert outcome.error == f"the answer was cut at max_tokens={2 * TASK.max_tokens}"


def test_row_timeout_bounds_the_retries_of_a_row(engines: Callable[..., Engine]) -> None:
    # No retry_after: the backoff would wait longer than the row has left, so the row ends at row_timeout.
    provider = FakeProvider({"t": [TransientError("server_error", "HTTP 500")] * 100})
    outcome = run_one(engines(provider, max_attempts=100, row_timeout=0.05), "t")
    assert outcome.error_kind == "row_timeout"
    assert outcome.error == "no valid answer within row_timeout=0.05s; last: server_error: HTTP 500"
    assert 1 <= outcome.attempts == len(provider.calls) < 100


def test_a_row_error_is_not_retried(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider({"t": [RowError("bad_request", "HTTP 400: too long")]})
    outcome = run_one(engines(provider), "t")
    assert (outcome.error_kind, outcome.error, outcome.attempts) == ("bad_request", "HTTP 400: too long", 1)


def test_a_fatal_provider_error_stops_the_run(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider({"t": [FatalProviderError("the provider refused the API key")]})
    engine = engines(provider)
    with pytest.raises(ProviderError, match="refused the API key"):
        engine.run([request("t")], lambda _o: None)
    assert engine.limiter(MODEL).in_flight == 0


def test_a_capped_budget_without_a_price_sends_nothing(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider()
    engine = engines(provider, prices=PriceTable())  # no price for model "m"
    with pytest.raises(ConfigError, match="no price is known for model 'm'"):
        engine.run([request("t", Budget(1.0))], lambda _o: None)
    assert provider.calls == []


@pytest.mark.parametrize("max_concurrency", [1, 8])
def test_rows_past_the_budget_are_not_sent_and_the_spend_stays_within_the_cap(
    engines: Callable[..., Engine], max_concurrency: int
) -> None:
    price = Price(input=1.0, output=1.0)  # USD per 1M tokens: a row costs 7e-6
    cap = 1e-4
    provider = FakeProvider()
    engine = engines(provider, prices=PriceTable({MODEL: price}), max_concurrency=max_concurrency)
    budget = Budget(cap)
    texts = [f"ticket {i:02d}" for i in range(40)]
    seen: list[Outcome] = []
    outcomes = engine.run([request(t, budget) for t in texts], seen.append)
    answered = [o for o in outcomes if o.ok]
    skipped = [o for o in outcomes if not o.ok]
    assert answered and skipped
    assert {(o.error_kind, o.error, o.attempts) for o in skipped} == {
        ("budget", "not sent: max_cost_usd was reached", 0)
    }
    assert len(provider.calls) == len(answered)  # a row left by the budget was never sent
    assert budget.spent_usd == pytest.approx(sum(o.cost_usd or 0.0 for o in answered))
    assert budget.spent_usd == pytest.approx(len(answered) * price.cost(USAGE.prompt_tokens, USAGE.completion_tokens))
    assert budget.spent_usd <= cap
    assert len(seen) == len(texts)  # on_outcome heard of every row, skipped ones included
    assert engine.limiter(MODEL).in_flight == 0


def test_a_key_submitted_twice_at_once_is_sent_once_and_the_second_caller_shares_it(
    engines: Callable[..., Engine],
) -> None:
    gate = threading.Event()
    provider = FakeProvider(gate=gate)
    engine = engines(provider, prices=PriceTable({MODEL: Price(1.0, 1.0)}))
    heard: list[tuple[str, Outcome]] = []
    first = engine.submit([request("same"), request("only first")], lambda o: heard.append(("first", o)))
    until(lambda: len(provider.calls) == 2)  # both in flight, held by the gate
    second: list[Pending] = []  # from another thread, as a second dbt thread would
    thread = threading.Thread(
        target=lambda: second.extend(engine.submit([request("same")], lambda o: heard.append(("second", o))))
    )
    thread.start()
    thread.join()
    assert [p.owned for p in first] == [True, True] and [p.owned for p in second] == [False]
    gate.set()
    [theirs] = engine.wait(second)
    ours = engine.wait(first)
    assert provider.texts().count("same") == 1
    assert ours[0].ok and not ours[0].shared and ours[0].cost_usd
    # The second caller gets the answer marked shared, without the cost, which the first one counts.
    assert (theirs.result, theirs.shared, theirs.cost_usd, theirs.attempts) == (ours[0].result, True, 0.0, 0)
    assert sorted(who for who, _ in heard) == ["first", "first"]  # only the owner's callback records it


def test_a_key_answered_after_the_callers_check_is_not_sent_again(engines: Callable[..., Engine]) -> None:
    """Two dbt threads: the second checked its texts before the first one's answer landed. On the
    loop, `still_needed` sees what was recorded by then, so the text is not paid for twice."""
    provider = FakeProvider()
    engine = engines(provider)
    answered: dict[str, str] = {}

    def record(outcome: Outcome) -> None:
        assert outcome.result is not None
        answered[outcome.key] = outcome.result

    [first] = engine.run([request("shared")], record)  # landed after the second caller checked
    pending = engine.submit([request("shared"), request("new")], record, still_needed=lambda key: key not in answered)
    assert [p.key for p in pending] == [request("new").key]
    engine.wait(pending)
    assert provider.texts() == ["shared", "new"] and first.ok


def test_a_prefetch_waits_for_its_owner_and_the_keys_waited_for_start_first(
    engines: Callable[..., Engine],
) -> None:
    gate = threading.Event()
    provider = FakeProvider(gate=gate)
    engine = engines(provider, max_concurrency=2)  # two slots for the model
    texts = [f"row {i}" for i in range(6)]
    pending = engine.submit([request(t) for t in texts], lambda _o: None, prefetch_for="chunk")
    gate.set()
    engine.run([request("other")], lambda _o: None)  # the loop went round: nothing of the prefetch started
    assert provider.texts() == ["other"]

    gate.clear()
    waiter = threading.Thread(target=engine.wait, args=([pending[4]], "chunk"))
    waiter.start()
    until(lambda: len(provider.calls) == 3)
    # The key waited for first, then the prefetch in submit order, while the model has a free slot.
    assert provider.texts() == ["other", "row 4", "row 0"]
    gate.set()
    waiter.join()
    started = [t for t in provider.texts()[1:] if t != "row 4"]
    assert started == texts[: len(started)]  # whatever else started, in submit order
    assert all(o.ok for o in engine.wait(pending))  # the rest start once waited for


def test_a_wait_without_owner_sends_only_the_keys_waited_for(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider()
    engine = engines(provider, max_concurrency=1)
    texts = [f"row {i}" for i in range(5)]
    pending = engine.submit([request(t) for t in texts], lambda _o: None, prefetch_for="chunk")
    [outcome] = engine.wait([pending[3]])
    assert outcome.ok and not outcome.shared
    # One slot: a prefetched row started alongside would hold it ahead of this one, and show here.
    engine.run([request("other")], lambda _o: None)
    assert provider.texts() == ["row 3", "other"]


def test_a_dropped_prefetch_is_no_longer_in_flight_and_a_new_caller_owns_the_key(
    engines: Callable[..., Engine],
) -> None:
    provider = FakeProvider()
    engine = engines(provider, max_concurrency=1)
    old: list[Outcome] = []
    engine.submit([request(f"row {i}") for i in range(4)], old.append, prefetch_for="an old preview")
    assert engine.drop_prefetch() == 4 and engine.drop_prefetch() == 0
    new: list[Outcome] = []
    [pending] = engine.submit([request("row 2")], new.append)
    assert pending.owned  # its own request, recorded by the new caller, not by the dropped one
    [outcome] = engine.wait([pending])
    assert outcome.ok and not outcome.shared and [o.key for o in new] == [outcome.key] and old == []
    assert provider.texts() == ["row 2"]


def test_outcomes_come_back_in_the_order_of_the_requests(engines: Callable[..., Engine]) -> None:
    provider = FakeProvider({"slow": [TransientError("server_error", "HTTP 500", retry_after=0.0)]})
    texts = ["slow", "a", "b"]
    outcomes = engines(provider).run([request(t) for t in texts], lambda _o: None)
    assert [o.key for o in outcomes] == [request(t).key for t in texts]
    assert [o.attempts for o in outcomes] == [2, 1, 1]
    assert json.loads(outcomes[0].result or "") == {"label": "bug"}
