"""User JSON Schemas become strict schemas, SQL types and answer validators."""

from __future__ import annotations

from typing import Any

import pytest
from conftest import DbtProject
from pydantic import ValidationError

from dbt_llm.errors import SpecError
from dbt_llm.functions.schemas import answer_model, normalize_schema, sql_structure


def _extract_schema(prop: dict[str, Any]) -> dict[str, Any]:
    return normalize_schema({"type": "object", "properties": {"v": prop}}, "llm_extract")


@pytest.mark.parametrize(
    ("enum", "kind", "sql"),
    [
        (["red", "blue"], "string", "VARCHAR"),
        ([1, 2, 3], "integer", "BIGINT"),
        ([1, 2.5], "number", "DOUBLE"),
        ([True, False], "boolean", "BOOLEAN"),
        (["red", None], "string", "VARCHAR"),
    ],
)
def test_enum_without_type_takes_the_type_of_its_values(enum: list[Any], kind: str, sql: str) -> None:
    schema = _extract_schema({"enum": enum})
    assert schema["properties"]["v"]["type"] == [kind, "null"]
    assert sql_structure(schema) == {"v": sql}
    items = _extract_schema({"type": "array", "items": {"enum": enum}})["properties"]["v"]["items"]
    assert items["type"] == (kind if None not in enum else [kind, "null"])


@pytest.mark.parametrize("enum", [["a", 1], [1, True], [{"a": 1}], [None], []])
def test_enum_without_type_and_no_single_value_type_names_the_path(enum: list[Any]) -> None:
    with pytest.raises(SpecError, match=r"`enum` at \$\.v\[\] "):
        _extract_schema({"type": "array", "items": {"enum": enum}})


@pytest.mark.parametrize(
    ("kind", "enum", "good", "bad"),
    [
        ("integer", [1, 2], 2, [True, 2.0, 3, "2"]),
        ("boolean", [True], True, [1, False]),
        ("number", [1, 2.5], 1, [2, True]),
        ("string", ["a"], "a", ["b", 1]),
    ],
)
def test_enum_answers_must_have_the_type_as_well_as_the_value(
    kind: str, enum: list[Any], good: Any, bad: list[Any]
) -> None:
    model = answer_model(_extract_schema({"type": kind, "enum": enum}))
    assert model.model_validate({"v": good}).v == good  # type: ignore[attr-defined]
    assert model.model_validate({"v": None}).v is None  # type: ignore[attr-defined]
    for value in bad:
        with pytest.raises(ValidationError):
            model.model_validate({"v": value})


def test_enum_without_type_extracts_typed_values_in_a_real_run(project: DbtProject) -> None:
    project.write("seeds/shirts.csv", 'id,body\n1,"colour: red, size: 2"\n')
    schema = "{'type': 'object', 'properties': {'colour': {'enum': ['red', 'blue']}, 'size': {'enum': [1, 2, 3]}}}"
    project.write(
        "models/shirts_extracted.sql",
        f"select {{{{ dbt_llm.llm_extract('body', {schema}) }}}} as s from {{{{ ref('shirts') }}}}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    assert project.query("select s.colour, s.size, typeof(s) from shirts_extracted") == [
        ("red", 2, "STRUCT(colour VARCHAR, size BIGINT)")
    ]
