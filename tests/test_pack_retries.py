"""Packed requests in the engine, without dbt or HTTP: a fake provider answers each row of a pack from
its own text, so how packs form, split, re-pack invalid rows and share out usage is checked alone."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dbt_llm.engine import Budget, Engine, EngineSettings, Outcome, Request
from dbt_llm.engine.packing import Pack, packs_of, shares
from dbt_llm.errors import ProviderError
from dbt_llm.functions.tasks import build_task, cache_key
from dbt_llm.pricing import Price, PriceTable
from dbt_llm.providers.base import Completion, FatalProviderError, TransientError, Usage

MODEL = "m"
TASK = build_task(
    {"function": "classify", "labels": ["billing", "bug"]}, provider="fake", default_model=MODEL, temperature=0.0
)
OTHER = build_task(
    {"function": "classify", "labels": ["yes", "no"]}, provider="fake", default_model=MODEL, temperature=0.0
)
BLOCK = re.compile(r'<input id="([^"]+)">\n(.*?)\n</input>', re.S)


class PackedProvider:
    """Answers every row `bug`, except texts in `invalid` (always an answer off the schema) and
    requests while `errors` has steps (each raised once). Usage: 100 prompt + 7 per row, 3 per row out."""

    name = "fake"

    def __init__(self, invalid: set[str] | None = None, errors: list[Exception] | None = None) -> None:
        self.invalid = invalid or set()
        self.errors = list(errors or [])
        self.calls: list[list[str]] = []  # the texts of each request
        self.billed = Usage()

    async def complete(self, *, messages: list[dict[str, str]], **_: Any) -> Completion:
        content = messages[-1]["content"]
        rows = dict(BLOCK.findall(content))
        texts = list(rows.values()) or [content.split("<input>\n", 1)[1].split("\n</input>", 1)[0]]
        self.calls.append(texts)
        await asyncio.sleep(0.001)
        if self.errors:
            raise self.errors.pop(0)

        def one(text: str) -> dict[str, str]:
            return {"label": "nonsense" if text in self.invalid else "bug"}

        answer: Any = {row_id: one(text) for row_id, text in rows.items()} if rows else one(texts[0])
        usage = Usage(100 + 7 * len(texts), 3 * len(texts))
        self.billed = self.billed + usage
        return Completion(json.dumps(answer), "stop", usage)

    async def aclose(self) -> None:
        pass


@pytest.fixture
def engines() -> Iterator[Callable[..., Engine]]:
    made: list[Engine] = []

    def make(provider: PackedProvider, *, prices: PriceTable | None = None, **settings: Any) -> Engine:
        settings = {"max_concurrency": 1, "max_attempts": 4, **settings}
        engine = Engine(lambda: provider, prices=prices or PriceTable(free=True), settings=EngineSettings(**settings))
        made.append(engine)
        return engine

    yield make
    for engine in made:
        engine.close()


def requests(texts: list[str], k: int, task: Any = TASK, budget: Budget | None = None) -> list[Request]:
    budget = budget or Budget(None)
    return [Request(cache_key(task.spec_hash, t), task, t, budget, k) for t in texts]


def run(engine: Engine, reqs: list[Request]) -> list[Outcome]:
    return engine.run(reqs, lambda _o: None)


def test_packs_keep_order_size_text_budget_and_task_apart() -> None:
    budget = Budget(None)
    mixed = requests(["a", "b", "c"], 2, budget=budget) + requests(["x"], 2, OTHER, budget)
    mixed += requests(["d", "e" * 50, "f"], 2, budget=budget) + requests(["g"], 2)  # another model's budget
    packs = packs_of(mixed, lambda r: r, max_chars=40)
    assert [[r.text[:1] for r in p] for p in packs] == [["a", "b"], ["c", "d"], ["x"], ["e"], ["f"], ["g"]]


def test_usage_shares_sum_to_what_was_billed() -> None:
    parts = shares(Usage(1003, 47, 512), 16)
    assert sum((p for p in parts), Usage()) == Usage(1003, 47, 512)
    assert max(p.prompt_tokens for p in parts) - min(p.prompt_tokens for p in parts) <= 1


def test_a_pack_asks_one_required_answer_per_row() -> None:
    pack = Pack(tuple(requests(["a", "b", "c"], 3)))
    schema = pack.response_format()["json_schema"]["schema"]
    assert schema["required"] == ["r1", "r2", "r3"] and schema["additionalProperties"] is False
    assert schema["properties"]["r2"] == TASK.schema
    assert pack.max_tokens > 3 * TASK.max_tokens  # room for every row's answer
    user = pack.messages()[-1]["content"]
    assert '<input id="r1">\na\n</input>' in user and '<input id="r3">\nc\n</input>' in user
    assert pack.messages()[0] == TASK.messages("a")[0]  # the same system prompt: one prefix cache


def test_rows_go_k_at_a_time_and_share_out_what_was_billed(engines: Callable[..., Engine]) -> None:
    provider = PackedProvider()
    outcomes = run(engines(provider), requests([f"t{i}" for i in range(10)], 4))
    assert [len(c) for c in provider.calls] == [4, 4, 2]
    assert all(o.result == '{"label":"bug"}' for o in outcomes)
    assert sum(o.requests for o in outcomes) == 3 and sum(o.retry_requests for o in outcomes) == 0
    assert sum((o.usage for o in outcomes), Usage()) == provider.billed
    assert all(o.attempts == 1 for o in outcomes)


def test_invalid_rows_are_sent_again_in_halving_packs_until_they_fail(engines: Callable[..., Engine]) -> None:
    provider = PackedProvider(invalid={"bad1", "bad2"})
    texts = ["bad1", "a", "b", "c", "bad2", "d", "e", "f"]
    outcomes = {o.key: o for o in run(engines(provider, max_attempts=3), requests(texts, 8))}
    # 8 rows; the two invalid ones again in a pack of 4 (together), then of 2, then they fail.
    assert [len(c) for c in provider.calls] == [8, 2, 2]
    bad = [outcomes[cache_key(TASK.spec_hash, t)] for t in ("bad1", "bad2")]
    assert all(o.error_kind == "invalid_answer" and o.attempts == 3 for o in bad)
    assert sum(o.ok for o in outcomes.values()) == 6
    assert sum(o.requests for o in outcomes.values()) == 3 and sum(o.retry_requests for o in outcomes.values()) == 2
    assert sum((o.usage for o in outcomes.values()), Usage()) == provider.billed


def test_a_failed_pack_is_split_in_halves_down_to_single_rows(engines: Callable[..., Engine]) -> None:
    error = TransientError("server_error", "HTTP 500", retry_after=0.0)
    provider = PackedProvider(errors=[error, error])
    outcomes = run(engines(provider), requests([f"t{i}" for i in range(4)], 4))
    assert sorted(len(c) for c in provider.calls) == [1, 1, 2, 2, 4]  # 4 fails; 2 fails; 1, 1, and the other 2
    assert all(o.ok for o in outcomes)
    assert sum(o.requests for o in outcomes) == 5 and sum(o.retry_requests for o in outcomes) == 4


def test_a_refused_key_stops_every_row(engines: Callable[..., Engine]) -> None:
    provider = PackedProvider(errors=[FatalProviderError("the provider refused the API key")])
    with pytest.raises(ProviderError, match="refused the API key"):
        run(engines(provider), requests([f"t{i}" for i in range(4)], 4))


def test_the_budget_stops_packs_it_cannot_pay_for(engines: Callable[..., Engine]) -> None:
    provider = PackedProvider()
    prices = PriceTable({MODEL: Price(1000.0, 1000.0)})
    outcomes = run(engines(provider, prices=prices), requests([f"t{i}" for i in range(8)], 4, budget=Budget(0.2)))
    assert len(provider.calls) == 1  # a pack of 4 costs ~$0.15 at this price: the second does not fit
    assert [o.error_kind for o in outcomes] == [None] * 4 + ["budget"] * 4
