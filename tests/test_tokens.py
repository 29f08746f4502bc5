"""The one token estimate (limiter, budget, dry run) against what the test server bills for the same
requests. It bills ceil(characters / 4) of the messages and of the answer, with no chat template,
so its tokens are deterministic: the tolerances below are the estimate's own rounding and the
spread of answer lengths around the expected one, nothing timing-dependent."""

from __future__ import annotations

from typing import Any

from conftest import API_KEY
from openai_server import FakeOpenAI

from dbt_llm.engine import Budget, Engine, EngineSettings, Request
from dbt_llm.functions import tokens
from dbt_llm.functions.tasks import Task, build_task, cache_key
from dbt_llm.pricing import PriceTable
from dbt_llm.providers import OpenAIProvider


def template(n_messages: int) -> int:
    """What a chat format adds to `n_messages` messages; the server adds none."""
    return n_messages * tokens.MESSAGE_TOKENS + tokens.REPLY_TOKENS


def task(args: dict[str, Any]) -> Task:
    return build_task(args, provider="openai", default_model="gpt-4o-mini", temperature=0.0)


CLASSIFY = task(
    {
        "function": "classify",
        "labels": {"billing": "invoices, refunds", "bug": None, "feature request": None, "account access": None},
        "instructions": "Tickets come from a B2B accounting app.",
    }
)
EXTRACT = task(
    {
        "function": "extract",
        "fields": {"city": "string", "amount": "number", "paid": "boolean", "due": "date", "size": ["S", "M", "L"]},
    }
)
# Texts state about half the fields, as texts do; the server answers what is stated and null for the rest.
STATED = [
    "city: Berlin, amount: 12.5",
    "paid: yes, due: 2024-05-01",
    "size M, city: Lyon",
    "amount: 1200, paid: no, size L",
    "nothing useful here",
    "city: San Francisco, due: 2023-12-31, amount: 99.99",
]
TOPICS = ["I was charged twice", "the export crashes", "please add dark mode", "I cannot log in", "hello"]


def billed(server: FakeOpenAI, pairs: list[tuple[Task, str]]) -> list[tuple[Task, str, int, int]]:
    """(task, text, prompt tokens, completion tokens) as the server billed each request."""
    engine = Engine(
        lambda: OpenAIProvider(base_url=server.base_url, api_key=lambda: API_KEY, timeout=10, max_connections=8),
        prices=PriceTable(free=True),
        settings=EngineSettings(max_concurrency=8, max_attempts=1),
    )
    budget = Budget(None)
    requests = {cache_key(t.spec_hash, text): (t, text) for t, text in pairs}
    try:
        outcomes = engine.run([Request(k, t, text, budget) for k, (t, text) in requests.items()], lambda _o: None)
    finally:
        engine.close()
    assert all(o.ok and o.attempts == 1 for o in outcomes)
    return [(*requests[o.key], o.usage.prompt_tokens, o.usage.completion_tokens) for o in outcomes]


def test_estimate_is_what_the_server_bills_for_classify_and_extract(server: FakeOpenAI) -> None:
    pairs = [(CLASSIFY, f"ticket {i}: {TOPICS[i % len(TOPICS)]}") for i in range(30)]
    pairs += [(EXTRACT, f"order {i}: {STATED[i % len(STATED)]}") for i in range(30)]
    answered = billed(server, pairs)
    for function in ("classify", "extract"):
        rows = [row for row in answered if row[0].function == function]
        est_completion = billed_completion = 0
        for t, text, prompt, completion in rows:
            est_prompt, est_answer = t.estimate_tokens(text)
            # The messages as sent, counted per message (so rounded up once more per message after the
            # first) plus a chat template.
            n = len(t.messages(text))
            assert prompt + template(n) <= est_prompt <= prompt + template(n) + n - 1, (function, text)
            # One answer is a label or a set of stated fields: within a third of the expected length.
            assert abs(est_answer - completion) <= max(2, completion / 3), (function, text, completion)
            est_completion, billed_completion = est_completion + est_answer, billed_completion + completion
        # Over many rows, the expected answer length is within 10% of the billed one.
        assert 0.9 <= est_completion / billed_completion <= 1.1, function


def test_answer_length_follows_the_schema_not_max_tokens() -> None:
    short = task({"function": "classify", "labels": ["a", "b"]})
    long = task({"function": "classify", "labels": ["a very long label name", "another long label name"]})
    assert short.estimate_tokens("x")[1] < long.estimate_tokens("x")[1] < long.max_tokens // 2
    narrow = task({"function": "extract", "fields": {"city": "string"}})
    wide = task({"function": "extract", "fields": {f"field_{i}": "string" for i in range(12)}})
    assert narrow.estimate_tokens("x")[1] * 6 < wide.estimate_tokens("x")[1] < wide.max_tokens // 2
    # A longer text costs prompt tokens only.
    assert narrow.estimate_tokens("x" * 401)[0] == narrow.estimate_tokens("x")[0] + 100
