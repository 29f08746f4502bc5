"""Bad macro arguments fail at compile time, naming the macro and the value, before any request."""

from __future__ import annotations

import pytest
from conftest import DbtProject

from dbt_llm.errors import SpecError
from dbt_llm.functions.tasks import InvalidAnswer, build_task

CASES = [
    ("llm_classify('body', [])", "llm_classify(body) in model.dbt_llm_example.bad: `labels` is empty"),
    ("llm_classify('body', ['a', 'b', 'a'])", "duplicate label 'a'"),
    ("llm_classify('body', 'a,b')", "`labels` must be a list"),
    ("llm_classify('body', ['a', ''])", "every label must be a non-empty string"),
    ("llm_extract('body', {'city': 'text'})", "field `city` has unknown type 'text'"),
    ("llm_extract('body', {})", "`fields` must be a non-empty dict"),
    ("llm_extract('body', {'size': []})", "field `size` must be a type name or a non-empty list"),
    (
        "llm_extract('body', {'type': 'object', 'properties': {'a': {'oneOf': [{'type': 'string'}]}}})",
        "keyword(s) ['oneOf'] at $.a are not supported",
    ),
    (
        "llm_extract('body', {'type': 'object', 'properties': {'a': {'type': 'text'}}})",
        "`type` at $.a is 'text'",
    ),
    (
        "llm_extract('body', {'type': 'object', 'properties': {'t': {'type': 'array', 'items': {'enum': ['a', 1]}}}})",
        "`enum` at $.t[] has no `type`, and its values ['a', 1] are not all strings",
    ),
    ("llm_classify('body', ['a', 'b'], examples=[{'input': 'x'}])", "`examples` must be a list"),
    ("llm_classify('body', ['a', 'b']) }}{{ config(materialized='view')", "materialized as view"),
    (
        "llm_classify('body', ['spam'])",
        "llm_classify(body) in model.dbt_llm_example.bad: `labels` has one label ('spam'), so every row would get "
        "it, and each would still be paid for. Give at least two labels",
    ),
    ("llm_classify('body', ['spam'], multi_label=true)", "with multi_label that is a yes/no question. Use llm_filter"),
]


@pytest.fixture
def tickets(project: DbtProject) -> DbtProject:
    project.write("seeds/tickets.csv", "id,body\n1,hello\n")
    project.dbt("seed")
    return project


@pytest.mark.parametrize(("call", "expected"), CASES)
def test_bad_arguments_fail_at_compile_time(tickets: DbtProject, call: str, expected: str) -> None:
    tickets.write("models/bad.sql", f"select {{{{ dbt_llm.{call} }}}} as x from {{{{ ref('tickets') }}}}\n")
    result = tickets.dbt("compile", "--select", "bad", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert expected in message, message
    assert "llm_" in message
    assert tickets.server.requests == []


def test_valid_json_schema_becomes_a_typed_struct(tickets: DbtProject) -> None:
    schema = (
        "{'type': 'object', 'properties': {'city': {'type': 'string'}, 'zip': {'type': 'integer'},"
        " 'tags': {'type': 'array', 'items': {'type': 'string'}},"
        " 'geo': {'type': 'object', 'properties': {'lat': {'type': 'number'}}, 'required': ['lat']}},"
        " 'required': ['city']}"
    )
    tickets.write("seeds/places.csv", "id,body\n1,city: Oslo; zip: 150; lat: 59.9\n")
    tickets.write(
        "models/places_extracted.sql",
        f"select id, {{{{ dbt_llm.llm_extract('body', {schema}) }}}} as p from {{{{ ref('places') }}}}\n",
    )
    tickets.dbt("seed")
    tickets.dbt("run", "--select", "places_extracted")
    row = tickets.query("select p.city, p.zip, p.tags, p.geo.lat, typeof(p) from places_extracted")[0]
    assert row[:4] == ("Oslo", 150, None, 59.9)
    assert row[4] == "STRUCT(city VARCHAR, zip BIGINT, tags VARCHAR[], geo STRUCT(lat DOUBLE))"


def test_the_new_functions_check_their_arguments() -> None:
    def task(**args: object) -> object:
        return build_task(args, provider="openai", default_model="m", temperature=0.0)

    with pytest.raises(SpecError, match="`dimensions` must be a whole number"):
        task(function="embed", dimensions=0)
    with pytest.raises(SpecError, match="unknown function 'summarise'; use one of classify, extract, filter"):
        task(function="summarise")
    multi = task(function="classify", labels=["a", "b", "c"], multi_label=True)
    assert multi.parse_answer('{"labels": ["c", "a", "c"]}') == '{"labels":["a","c"]}'  # a set, in label order
    single = task(function="classify", labels=["a", "b", "c"])
    assert multi.spec_hash != single.spec_hash  # multi_label is part of the cache key
    embedding = task(function="embed", dimensions=2)
    assert embedding.parse_answer("[0.5, 1]") == '{"embedding":[0.5,1.0]}'
    with pytest.raises(InvalidAnswer, match="3 dimensions, not the 2"):
        embedding.parse_answer("[1, 2, 3]")


def test_a_misspelt_column_is_named_with_the_model_s_columns_only(tickets: DbtProject) -> None:
    tickets.write(
        "models/bad.sql", "select {{ dbt_llm.llm_classify('bdy', ['a', 'b']) }} as x from {{ ref('tickets') }}\n"
    )
    result = tickets.dbt("run", "--select", "bad", ok=False)
    message = "".join(str(r.message) for r in (result.result or []))
    assert 'column "bdy" not found' in message, message
    candidates = message.split("Candidate bindings:")[1]
    assert "body" in candidates and "key" not in candidates and "model" not in candidates, message
    assert tickets.server.requests == []
