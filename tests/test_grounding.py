"""Grounded extraction: a string the input text does not contain is an invented value, nulled and
counted; enums, dates, numbers and `grounded: false` strings are exempt."""

from __future__ import annotations

import json

import pytest
from conftest import DbtProject

from dbt_llm.errors import SpecError
from dbt_llm.functions.grounding import ground
from dbt_llm.functions.schemas import fields_to_schema, normalize_schema
from dbt_llm.functions.tasks import build_task

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
    classify = build_task({"function": "classify", "labels": ["x"]}, provider="p", default_model="m", temperature=0.0)
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
