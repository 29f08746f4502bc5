"""provider: anthropic without dbt: every request body the provider builds (realtime per function kind,
and Message Batches) validated against Anthropic's published request schema (tests/data), and the
provider and batch client against the fake Messages API on 127.0.0.1: answers, usage with cache writes
and reads, stop reasons, errors, rate headers, custom ids, shuffled results, a lost create answer."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from anthropic_server import FakeAnthropic

from dbt_llm.batch.runner import BatchRunner, BatchSettings
from dbt_llm.calls.plan import plan_call
from dbt_llm.config import parse_config
from dbt_llm.engine import Budget, Request
from dbt_llm.engine.packing import Pack
from dbt_llm.errors import ConfigError, SpecError
from dbt_llm.functions.agg_tree import merge_task
from dbt_llm.functions.tasks import Task, build_task, cache_key
from dbt_llm.pricing import Price, PriceTable
from dbt_llm.providers.anthropic import AnthropicProvider, claude_schema, messages_body, rate_of, retry_after_of
from dbt_llm.providers.anthropic_batch import AnthropicBatchClient, parse_result_line, wire_id
from dbt_llm.providers.base import Completion, FatalProviderError, RowError, TransientError
from dbt_llm.providers.openai import chat_body

KEY = "sk-ant-test-0123456789-SECRET"
ENV = "DBT_LLM_TEST_ANTHROPIC_KEY"
MODEL = "claude-haiku-4-5"
SPEC = json.loads((Path(__file__).parent / "data" / "anthropic_messages.schema.json").read_text())
LABELS = {
    f"label_{i}": f"a ticket about topic number {i}, its product area, and what the customer asks" for i in range(60)
}


def validator(name: str) -> jsonschema.Draft202012Validator:
    return jsonschema.Draft202012Validator({**SPEC, "$ref": f"#/$defs/{name}"})


MESSAGE = validator("CreateMessageParams")
BATCH = validator("BatchCreateParams")


def task(function: str, **args: Any) -> Task:
    return build_task({"function": function, **args}, provider="anthropic", default_model=MODEL, temperature=0.0)


TASKS = {
    "classify": task("classify", labels=["billing", "bug"]),
    "classify_long": task("classify", labels=LABELS),
    "classify_multi": task("classify", labels=["billing", "bug"], multi_label=True),
    "extract": task("extract", fields={"city": "string", "when": "date", "n": "integer"}),
    "filter": task("filter", question="Is it about billing?"),
    "complete": task("complete", prompt="Summarise:"),
    "agg": task("agg", task="Summarise the complaints"),
}
TASKS["agg_merge"] = merge_task(TASKS["agg"])


def body_of(asked: Request | Pack) -> dict[str, Any]:
    return messages_body(asked.model, asked.messages(), asked.response_format(), asked.max_tokens, asked.temperature)


def request(t: Task, text: str) -> Request:
    return Request(cache_key(t.spec_hash, text), t, text, Budget(None), 4)


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_realtime_body_conforms_to_the_published_schema(name: str) -> None:
    body = body_of(request(TASKS[name], "my invoice from Paris is wrong"))
    MESSAGE.validate(body)
    assert body["max_tokens"] >= 1
    # An extraction without instructions or examples has no fixed text of its own: no system.
    assert ("system" in body) is (name != "extract")
    assert "system" not in body or body["system"][0]["type"] == "text"
    assert ("output_config" in body) is (TASKS[name].response_format() is not None)  # free text is not constrained
    assert ("output_config" in body) is not name.startswith(("complete", "agg"))


def test_a_packed_body_and_a_batch_body_conform_and_custom_ids_fit() -> None:
    t = TASKS["classify"]
    rows = [request(t, f"text {i}") for i in range(3)]
    pack = Pack(tuple(rows))
    MESSAGE.validate(body_of(pack))
    client = AnthropicBatchClient(base_url="https://api.anthropic.com", api_key=lambda: KEY, api_key_env=ENV)
    lines = [
        client.request_line(asked.key, chat_body(asked.model, asked.messages(), asked.response_format(), 64, 0.0))
        for asked in [*rows, pack]
    ]
    BATCH.validate({"requests": lines})
    assert lines[0]["custom_id"] == rows[0].key and lines[-1]["custom_id"] == wire_id(pack.key) != pack.key
    assert lines[0]["params"] == messages_body(t.model, rows[0].messages(), t.response_format(), 64, 0.0)


def test_the_schema_refuses_what_claude_refuses() -> None:
    """The check can fail: an OpenAI body, a temperature above 1, a bad custom_id are refused."""
    good = body_of(request(TASKS["classify"], "x"))
    for bad in (
        {**good, "response_format": {"type": "json_schema"}},
        {**good, "temperature": 1.5},
        {k: v for k, v in good.items() if k != "max_tokens"},
        {**good, "messages": [{"role": "system", "content": "x"}]},
    ):
        assert not MESSAGE.is_valid(bad)
    assert not BATCH.is_valid({"requests": [{"custom_id": "pack:abc", "params": good}]})


def test_schemas_are_closed_and_stripped_of_what_claude_does_not_take() -> None:
    schema = {
        "type": "object",
        "properties": {"n": {"type": "integer", "minimum": 1}, "o": {"type": ["object", "null"], "properties": {}}},
    }
    out = claude_schema(schema)
    assert out["additionalProperties"] is False and out["properties"]["o"]["additionalProperties"] is False
    assert "minimum" not in out["properties"]["n"]


def test_a_long_fixed_prompt_gets_a_cache_breakpoint_and_a_short_one_none() -> None:
    long = body_of(request(TASKS["classify_long"], "x"))
    short = body_of(request(TASKS["classify"], "x"))
    assert long["system"][0]["cache_control"] == {"type": "ephemeral"}
    assert "cache_control" not in short["system"][0]
    assert "label_59" in long["system"][0]["text"] and "x" not in long["system"][0]["text"].split("Labels")[0][-1:]


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY, hang_seconds=2.0, batch_delay=0.0) as server:
        yield server


def provider(fake: FakeAnthropic, key: str = KEY, headers: dict[str, str] | None = None) -> AnthropicProvider:
    return AnthropicProvider(
        base_url=fake.base_url,
        api_key=lambda: key,
        api_key_env=ENV,
        timeout=5.0,
        max_connections=4,
        headers=lambda: headers or {},
    )


def ask(fake: FakeAnthropic, asked: Request, **kwargs: Any) -> Completion:
    async def go() -> Completion:
        p = provider(fake, **kwargs)
        try:
            return await p.complete(
                model=asked.model,
                messages=asked.messages(),
                response_format=asked.response_format(),
                max_tokens=asked.max_tokens,
                temperature=0.0,
            )
        finally:
            await p.aclose()

    return asyncio.run(go())


def test_an_answer_is_valid_json_and_a_long_prompt_is_written_then_read_from_the_cache(fake: FakeAnthropic) -> None:
    t = TASKS["classify_long"]
    first = ask(fake, request(t, "label_7 please"), headers={"X-Gateway": "gw-1234567890"})
    second = ask(fake, request(t, "label_9 please"))
    assert json.loads(first.content or "")["label"] == "label_7" and first.finish_reason == "stop"
    assert first.usage.cache_write_tokens > 1024 and first.usage.cached_tokens == 0
    assert second.usage.cached_tokens == first.usage.cache_write_tokens and second.usage.cache_write_tokens == 0
    records = fake.requests
    assert [r.prompt_tokens for r in records] == [first.usage.prompt_tokens, second.usage.prompt_tokens]
    assert records[0].cached_tokens == 0 and records[1].cached_tokens == second.usage.cached_tokens
    _method, path, headers = fake.seen_headers[0]
    assert (path, headers["x-api-key"], headers["anthropic-version"], headers["X-Gateway"]) == (
        "/v1/messages",
        KEY,
        "2023-06-01",
        "gw-1234567890",
    )
    assert first.rate is not None and first.rate.limit_requests == 4000 and first.rate.limit_tokens == 400_000


def test_cache_writes_and_reads_are_priced_apart() -> None:
    price = PriceTable().price("claude-haiku-4-5-20251001")
    assert price == Price(1.0, 5.0, cached_input=0.1, cache_write_input=1.25)
    # 100 new, 2000 written, 0 read, 10 out; then 100 new, 0 written, 2000 read
    assert price.cost(2100, 10, 0, 2000) == pytest.approx((100 * 1.0 + 2000 * 1.25 + 10 * 5.0) / 1e6)
    assert price.cost(2100, 10, 2000, 0) == pytest.approx((100 * 1.0 + 2000 * 0.1 + 10 * 5.0) / 1e6)
    batch = price.for_batch()
    assert batch.cost(2100, 10, 0, 2000) == pytest.approx(price.cost(2100, 10, 0, 2000) / 2)
    assert PriceTable().price("claude-sonnet-4-5-20250929") == PriceTable().price("claude-sonnet-4")
    assert PriceTable().price("claude-opus-4-1-20250805").input == 15.0  # type: ignore[union-attr]
    assert PriceTable().price("claude-opus-4-5").input == 5.0  # type: ignore[union-attr]


def test_stop_reasons_and_errors_are_sorted_as_the_engine_needs(fake: FakeAnthropic) -> None:
    r = request(TASKS["classify"], "a bug")
    fake.inject("truncated")
    assert ask(fake, r).finish_reason == "length"
    fake.inject("429", retry_after=0.25)
    with pytest.raises(TransientError) as limited:
        ask(fake, r)
    assert limited.value.kind == "rate_limited" and limited.value.retry_after == 0.25
    assert limited.value.rate is not None and limited.value.rate.remaining_requests == 0
    fake.inject("529")
    with pytest.raises(TransientError, match="overloaded_error") as overloaded:
        ask(fake, r)
    assert overloaded.value.kind == "server_error"
    with pytest.raises(FatalProviderError, match=ENV) as refused:
        ask(fake, r, key="sk-ant-wrong-0123456789")
    assert "sk-ant-wrong-0123456789" not in str(refused.value)
    with pytest.raises(RowError):  # a 400: this request's own
        asyncio.run(
            provider(fake).complete(model=MODEL, messages=[], response_format=None, max_tokens=5, temperature=0)
        )


def test_rate_headers_and_rfc3339_resets() -> None:
    rate = rate_of({"anthropic-ratelimit-requests-limit": "50", "anthropic-ratelimit-input-tokens-limit": "8000"})
    assert rate is not None and (rate.limit_requests, rate.limit_tokens) == (50, 8000)
    assert rate_of({"x-other": "1"}) is None


def test_result_lines_of_every_type() -> None:
    message = {"type": "message", "content": [{"type": "text", "text": "{}"}], "stop_reason": "refusal", "usage": {}}
    refused = parse_result_line({"custom_id": "a", "result": {"type": "succeeded", "message": message}})
    assert refused.completion is not None and refused.completion.finish_reason == "refusal"
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
    assert (
        parse_result_line({"custom_id": "a", "result": {"type": "errored", "error": error}}).error_kind
        == "server_error"
    )
    bad = {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}
    assert (
        parse_result_line({"custom_id": "a", "result": {"type": "errored", "error": bad}}).error_kind == "bad_request"
    )
    assert parse_result_line({"custom_id": "a", "result": {"type": "expired"}}).error_kind == "batch_expired"
    assert parse_result_line({"custom_id": "a", "result": {"type": "canceled"}}).error_kind == "batch_cancelled"


def batch_client(fake: FakeAnthropic) -> AnthropicBatchClient:
    return AnthropicBatchClient(base_url=fake.base_url, api_key=lambda: KEY, api_key_env=ENV)


def run(runner: BatchRunner, requests: list[Request]) -> tuple[list[Any], list[Any]]:
    created: list[Any] = []
    outcomes: list[Any] = []
    result = runner.run(requests, deadline=1e18, max_attempts=3, on_created=created.append, on_outcome=outcomes.append)
    assert not result.pending
    return created, outcomes


def test_a_batch_of_rows_and_packs_is_answered_by_custom_id_at_half_price(fake: FakeAnthropic) -> None:
    t = TASKS["classify"]
    budget = Budget(None)
    rows = [Request(cache_key(t.spec_hash, f"bug {i}"), t, f"bug {i}", budget, 2 if i < 4 else 1) for i in range(7)]
    fake.inject_batch_line("expired", match="bug 5")
    fake.inject_batch_line("overloaded", match="bug 6")
    runner = BatchRunner(batch_client(fake), prices=PriceTable(), settings=BatchSettings(poll_initial=0.01))
    created, outcomes = run(runner, rows)
    [first, retry] = fake.message_batches  # the expired and overloaded lines: sent again in a follow-up batch
    assert len(created) == 2 and len(first.requests) == 5 and len(retry.requests) == 2
    assert any(line["custom_id"].startswith("h-") for line in first.requests)  # a pack's id, mapped
    assert all(o.ok and json.loads(o.result)["label"] == "bug" for o in outcomes) and len(outcomes) == 7
    billed = fake.batch_requests
    cost = sum(o.cost_usd for o in outcomes)
    price = PriceTable().price(MODEL, batch=True)
    assert price is not None and cost == pytest.approx(
        sum(price.cost(r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.cache_write_tokens) for r in billed)  # type: ignore[attr-defined]
    )
    assert [r["custom_id"] for r in first.results] != [r["custom_id"] for r in first.requests]  # shuffled


def test_a_lost_create_answer_finds_its_batch_and_creates_no_other(fake: FakeAnthropic) -> None:
    t = TASKS["classify"]
    rows = [request(t, f"bug {i}") for i in range(3)]
    fake.lose_creates = 1
    runner = BatchRunner(batch_client(fake), settings=BatchSettings(poll_initial=0.01), sleep=lambda s: None)
    created, outcomes = run(runner, [Request(r.key, t, r.text, r.budget) for r in rows])
    assert len(fake.message_batches) == 1 and [c.batch_id for c in created] == [fake.message_batches[0].id]
    assert len(outcomes) == 3


def test_results_elsewhere_than_base_url_get_no_key(fake: FakeAnthropic) -> None:
    with pytest.raises(FatalProviderError, match="not on base_url"):
        batch_client(fake).content("https://elsewhere.example/results")


def test_config_defaults_and_the_temperature_bound() -> None:
    config = parse_config({"provider": "anthropic"})
    assert (config.base_url, config.api_key_env, config.model) == (
        "https://api.anthropic.com",
        "ANTHROPIC_API_KEY",
        "claude-haiku-4-5",
    )
    assert parse_config({"provider": "anthropic", "model": "claude-sonnet-4-5", "api_key_env": "K"}).api_key_env == "K"
    assert parse_config({}).base_url == "https://api.openai.com/v1"
    with pytest.raises(ConfigError, match=r"`temperature` is 1.5, above 1, with provider anthropic"):
        parse_config({"provider": "anthropic", "temperature": 1.5})
    assert (
        parse_config({"prices": {"m": {"input": 1, "output": 2, "cache_write_input": 3}}}).prices["m"].cache_write_input
        == 3
    )


def test_a_429_without_retry_after_waits_for_the_spent_budget_to_reset_and_a_529_does_not() -> None:
    soon = (datetime.now(timezone.utc) + timedelta(seconds=30)).isoformat()
    later = (datetime.now(timezone.utc) + timedelta(seconds=300)).isoformat()
    headers = httpx.Headers(
        {
            "anthropic-ratelimit-requests-remaining": "0",
            "anthropic-ratelimit-requests-reset": soon,
            "anthropic-ratelimit-tokens-remaining": "900",
            "anthropic-ratelimit-tokens-reset": later,
        }
    )
    wait = retry_after_of(headers, limited=True)
    assert wait is not None and 25 < wait <= 30
    assert retry_after_of(headers, limited=False) is None
    assert retry_after_of(httpx.Headers({"retry-after": "2"}), limited=False) == 2.0


def test_what_claude_cannot_serve_is_refused_when_the_call_is_planned() -> None:
    config = parse_config({"provider": "anthropic"})
    base = {"function": "classify", "text": "body", "labels": ["bug", "billing"], "node_id": "model.x.m"}
    call = plan_call(base, "inv", config, PriceTable())
    assert call.task.top_logprobs is None  # Claude is never asked for logprobs
    refusals = [
        ({"function": "embed", "text": "body", "node_id": "model.x.e"}, "llm_embed needs embeddings"),
        ({**base, "with_confidence": True}, "with_confidence=true needs token logprobs"),
        (
            {**base, "escalate_to": "claude-sonnet-4-5", "escalate_below": 0.8},
            "escalate_to= escalates on the confidence",
        ),
    ]
    for args, said in refusals:
        with pytest.raises(SpecError, match=said):
            plan_call(args, "inv", config, PriceTable())
    openai = plan_call(base, "inv", parse_config({}), PriceTable())
    assert openai.task.top_logprobs is not None
