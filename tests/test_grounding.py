"""Grounded extraction: a string the input text does not contain is an invented value, nulled and
counted; enums, dates, numbers and `grounded: false` strings are exempt."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import datetime
from typing import Any

import pytest
from conftest import DbtProject

from dbt_llm.batch.lines import BatchRecord, CollectResult, EndedBatch, Settling, settle_lines
from dbt_llm.engine import Budget, Engine, EngineSettings, Outcome, Request
from dbt_llm.errors import SpecError
from dbt_llm.functions.grounding import ground
from dbt_llm.functions.schemas import fields_to_schema, normalize_schema
from dbt_llm.functions.tasks import build_task, cache_key
from dbt_llm.pricing import PriceTable
from dbt_llm.providers.base import Completion, Usage
from dbt_llm.providers.openai_batch import BatchStatus

TEXT = "Ship to  ACME gmbh,\nHauptstrasse 5, Berlin. Ordered on 3 March 2024, 12 units, paid."
FIELDS = fields_to_schema(
    {"company": "string", "city": "string", "country": ["DE", "FR"], "ordered": "date", "units": "integer"}, "t"
)


def test_an_invented_string_is_nulled_and_counted() -> None:
    answer = {"company": "Acme GmbH", "city": "Munich", "country": "DE", "ordered": "2024-03-03", "units": 12}
    grounded, count = ground(FIELDS, answer, TEXT)
    assert count == 1 and grounded["city"] is None
    assert grounded["company"] == "Acme GmbH"  # case and whitespace do not matter
    # The date, the enum and the number normalise what the text says: exempt.
    assert (grounded["ordered"], grounded["country"], grounded["units"]) == ("2024-03-03", "DE", 12)


def test_grounded_false_exempts_a_string_and_arrays_drop_invented_items() -> None:
    schema = normalize_schema(
        {
            "type": "object",
            "properties": {
                "summary": {"type": "string", "grounded": False},
                "cities": {"type": "array", "items": {"type": "string"}},
                "buyer": {"type": "object", "properties": {"name": {"type": "string"}}},
            },
        },
        "t",
    )
    answer = {"summary": "a German order", "cities": ["Berlin", "Paris"], "buyer": {"name": "Bob"}}
    grounded, count = ground(schema, answer, TEXT)
    assert grounded == {"summary": "a German order", "cities": ["Berlin"], "buyer": {"name": None}}
    assert count == 2


def test_grounded_is_never_sent_and_must_be_a_boolean_on_a_string() -> None:
    fields = {"type": "object", "properties": {"summary": {"type": "string", "grounded": False}}}
    task = build_task({"function": "extract", "fields": fields}, provider="p", default_model="m", temperature=0.0)
    assert "grounded" not in json.dumps(task.response_format())
    assert task.schema["properties"]["summary"]["grounded"] is False  # in the spec: part of the cache key
    with pytest.raises(SpecError, match=r"`grounded` at \$.n must be true or false on a string"):
        normalize_schema({"type": "object", "properties": {"n": {"type": "integer", "grounded": False}}}, "t")


def test_the_task_grounds_extractions_only() -> None:
    extract = build_task(
        {"function": "extract", "fields": {"city": "string"}}, provider="p", default_model="m", temperature=0.0
    )
    assert extract.ground('{"city":"Munich"}', TEXT) == ('{"city":null}', 1)
    assert extract.ground('{"city":"berlin"}', TEXT) == ('{"city":"berlin"}', 0)
    classify = build_task(
        {"function": "classify", "labels": ["x", "y"]}, provider="p", default_model="m", temperature=0.0
    )
    assert classify.ground('{"label":"x"}', "no x here") == ('{"label":"x"}', 0)


def test_a_run_nulls_invented_values_and_audits_them(project: DbtProject) -> None:
    rows = [f'{i},"order {i}: city: Berlin, ordered: 2024-03-0{i}, size: S"' for i in range(1, 6)]
    project.write("seeds/t.csv", "id,body\n" + "\n".join(rows) + "\n")
    fields = "{'city': 'string', 'ordered': 'date', 'size': ['S', 'M']}"
    project.write(
        "models/m.sql",
        f"select id, {{{{ dbt_llm.llm_extract('body', {fields}) }}}} as x from {{{{ ref('t') }}}}\n",
    )
    project.dbt("seed")
    project.server.inject("invented", match="order 2:")
    project.dbt("run")
    got = project.query("select id, x.city, x.ordered::varchar, x.size from m order by id")
    assert got[1] == (2, None, "2024-03-02", "S")  # the invented city is NULL; the date and enum stand
    assert all(city == "Berlin" for _, city, _, _ in got[:1] + got[2:])
    assert project.query("select ungrounded_values from dbt_llm.llm_audit") == [(1,)]
    assert project.query("select count(*) from dbt_llm.llm_cache where result like '%Atlantis%'") == [(0,)]


# Grounding happens where an answer is checked (engine/outcome.py), once per row against its own text,
# on every path: realtime, packed, shared with another caller, a batch line.
CITY = build_task({"function": "extract", "fields": {"city": "string"}}, provider="p", default_model="m", temperature=0)


class ScriptedProvider:
    """A stand-in for the provider's HTTP API: the nth chat request gets `contents[n]`; while `gate` is
    clear, requests are held in flight."""

    name = "scripted"

    def __init__(self, contents: list[str], gate: threading.Event | None = None) -> None:
        self.contents = list(contents)
        self.gate = gate
        self.sent = 0

    async def complete(self, **_: Any) -> Completion:
        self.sent += 1
        while self.gate is not None and not self.gate.is_set():
            await asyncio.sleep(0.001)
        return Completion(self.contents.pop(0), "stop", Usage(10, 5))

    async def aclose(self) -> None:
        pass


def city_request(text: str, rows_per_request: int = 1, budget: Budget | None = None) -> Request:
    return Request(cache_key(CITY.spec_hash, text), CITY, text, budget or Budget(None), rows_per_request)


def answered(provider: ScriptedProvider, requests: list[Request]) -> tuple[list[Outcome], list[Outcome]]:
    """(what `run` returns, what on_outcome got) for the requests, on a fresh engine."""
    engine = Engine(lambda: provider, prices=PriceTable(free=True), settings=EngineSettings(1, 1))
    seen: list[Outcome] = []
    try:
        return engine.run(requests, seen.append), seen
    finally:
        engine.close()


def test_a_realtime_answer_is_grounded_once_against_its_text() -> None:
    [outcome], [seen] = answered(ScriptedProvider(['{"city": "Munich"}']), [city_request("ship to Berlin")])
    assert (outcome.result, outcome.ungrounded) == ('{"city":null}', 1) and seen is outcome


def test_each_row_of_a_pack_is_grounded_against_its_own_text() -> None:
    budget = Budget(None)
    rows = [city_request("ship to Berlin", 2, budget), city_request("ship to Paris", 2, budget)]
    provider = ScriptedProvider([json.dumps({"r1": {"city": "Paris"}, "r2": {"city": "Paris"}})])
    outcomes, _ = answered(provider, rows)
    assert provider.sent == 1  # one packed request
    assert [(o.result, o.ungrounded) for o in outcomes] == [('{"city":null}', 1), ('{"city":"Paris"}', 0)]


def test_a_shared_answer_comes_grounded_and_is_counted_once() -> None:
    gate = threading.Event()
    provider = ScriptedProvider(['{"city": "Munich"}'], gate)
    engine = Engine(lambda: provider, prices=PriceTable(free=True), settings=EngineSettings(1, 1))
    seen: list[Outcome] = []
    try:
        first = engine.submit([city_request("ship to Berlin")], seen.append)
        second = engine.submit([city_request("ship to Berlin")], seen.append)  # in flight: not sent again
        gate.set()
        [owned], [shared] = engine.wait(first), engine.wait(second)
    finally:
        engine.close()
    assert provider.sent == 1 and len(seen) == 1
    assert (owned.result, owned.ungrounded, owned.shared) == ('{"city":null}', 1, False)
    assert (shared.result, shared.ungrounded, shared.shared) == ('{"city":null}', 0, True)  # counted by its owner


def _line(custom_id: str, content: Any) -> bytes:
    body = {
        "choices": [{"index": 0, "message": {"content": json.dumps(content)}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 5},
    }
    return json.dumps({"custom_id": custom_id, "response": {"status_code": 200, "body": body}}).encode()


def test_batch_lines_are_grounded_as_realtime_answers_are_a_packed_line_per_row() -> None:
    budget = Budget(None)
    alone, berlin, paris = (city_request(t, 2, budget) for t in ["ship to Rome", "ship to Berlin", "ship to Paris"])
    record = BatchRecord(
        "batch_1",
        "file_1",
        (alone.key, berlin.key, paris.key),
        datetime(2024, 1, 1),
        "completed",
        packed=((berlin.key, "pack:1", "r1"), (paris.key, "pack:1", "r2")),
    )
    files = [
        _line(alone.key, {"city": "Oslo"}) + b"\n" + _line("pack:1", {"r1": {"city": "Paris"}, "r2": {"city": "Paris"}})
    ]
    result = CollectResult()
    seen: list[Outcome] = []
    by_key = {r.key: r for r in (alone, berlin, paris)}
    ended = EndedBatch(record, BatchStatus("batch_1", "completed"), files)
    settle_lines(ended, Settling(by_key, {}, seen.append, PriceTable()), result)
    got = {o.key: (o.result, o.ungrounded) for o in result.outcomes}
    nulled, kept = ('{"city":null}', 1), ('{"city":"Paris"}', 0)
    assert got == {alone.key: nulled, berlin.key: nulled, paris.key: kept}
    assert len(seen) == 3 and not result.retry
