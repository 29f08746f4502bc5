"""The function registry and the model settings: per-function behaviour lives in one registry entry
(no code compares a function's name), and a model's meta `dbt_llm` is checked by the profile's own types."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

from dbt_llm import SpecError, build_task
from dbt_llm.calls.ledger import Ledger
from dbt_llm.calls.settings import call_mode, parse_model_settings
from dbt_llm.errors import InternalStateError
from dbt_llm.functions import prompts
from dbt_llm.functions.specs import FUNCTIONS, Filter, FunctionSpec
from dbt_llm.functions.tasks import Task

PACKAGE = Path(__file__).resolve().parents[1] / "dbt_llm"
DEFAULTS: dict[str, Any] = {"provider": "openai", "default_model": "gpt-4o-mini", "temperature": 0.0}
WHERE = "llm_classify(body) in model.p.m"


def _names_compared(node: ast.Compare) -> list[str]:
    sides = [node.left, *node.comparators]
    found = []
    for side in sides:
        items = side.elts if isinstance(side, (ast.Tuple, ast.List, ast.Set)) else [side]
        found += [i.value for i in items if isinstance(i, ast.Constant) and i.value in FUNCTIONS]
    return found


def test_no_code_compares_a_function_name_the_registry_owns_the_behaviour() -> None:
    compared = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} compares {names}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Compare) and (names := _names_compared(node))
    ]
    assert compared == []


class Verify(Filter):
    """A new function, as a project would add one: a yes/no check with its own prompt."""

    def build(self, args: dict[str, Any], where: str) -> FunctionSpec:
        own = super().build({"question": "Is the claim true?"}, where)
        return FunctionSpec(own.spec, own.schema, own.max_tokens, "filter")

    def messages(self, task: Task, text: str) -> list[prompts.Message]:
        return [{"role": "user", "content": f"Verify: {text}"}]


def test_a_new_function_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(FUNCTIONS, "verify", Verify())
    task = build_task({"function": "verify"}, **DEFAULTS)
    assert task.spec["function"] == "verify" and task.packable and not task.embeds
    assert task.messages("the sky is green") == [{"role": "user", "content": "Verify: the sky is green"}]
    format_ = task.response_format()
    assert format_ is not None and format_["json_schema"]["name"] == "llm_verify"
    assert task.parse_answer('{"answer": false}') == '{"answer":false}'


@pytest.mark.parametrize(
    ("function", "args", "embeds", "packable", "json_answer", "grounded"),
    [
        ("classify", {"labels": ["a", "b"]}, False, True, True, False),
        ("extract", {"fields": {"city": "string"}}, False, True, True, True),
        ("filter", {"question": "Is it a bug?"}, False, True, True, False),
        ("complete", {}, False, False, False, False),
        ("embed", {}, True, True, False, False),
    ],
)
def test_each_function_s_behaviour_comes_from_its_entry(
    function: str, args: dict[str, Any], embeds: bool, packable: bool, json_answer: bool, grounded: bool
) -> None:
    task = build_task({"function": function, **args}, **DEFAULTS)
    assert task.kind is FUNCTIONS[function]
    assert (task.embeds, task.packable, task.response_format() is not None) == (embeds, packable, json_answer)
    # Grounding nulls what the text does not contain, for the functions that are grounded only.
    answer = '{"city": "Paris"}'
    assert task.ground(answer, "no city here") == (('{"city":null}', 1) if grounded else (answer, 0))


def test_a_packed_request_of_a_free_text_function_is_refused_not_sent_as_another_s() -> None:
    task = build_task({"function": "complete"}, **DEFAULTS)
    with pytest.raises(InternalStateError, match="never packed"):
        task.packed_messages({"r1": "a text"})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"on_eror": "null"}, "meta `dbt_llm` has unknown key(s) ['on_eror']; known: on_error, model, max_cost_usd"),
        ({"on_error": "skip"}, "meta dbt_llm.on_error is 'skip'. Use `fail` or `null`."),
        ({"model": "  "}, "meta dbt_llm.model is '  '. Set it to a non-empty string."),
        ({"model": 4}, "meta dbt_llm.model is 4. Set it to a non-empty string."),
        ({"max_cost_usd": -1}, "meta dbt_llm.max_cost_usd is -1. Set it to a number >= 0."),
        ({"max_cost_usd": True}, "meta dbt_llm.max_cost_usd is True. Set it to a number >= 0."),
        ({"mode": "fast"}, "meta dbt_llm.mode is 'fast'. Use `realtime` or `batch`."),
        (["on_error"], "meta `dbt_llm` must be a dict; got ['on_error']"),
    ],
)
def test_bad_model_settings_name_the_key_the_value_and_the_fix(raw: Any, expected: str) -> None:
    with pytest.raises(SpecError) as caught:
        parse_model_settings(raw, WHERE)
    message = str(caught.value)
    assert message.startswith(f"{WHERE}: ") and expected in message
    assert "\n" not in message and "pydantic" not in message


def test_model_settings_read_as_the_profile_reads_its_keys() -> None:
    assert parse_model_settings(None, WHERE).on_error is None
    assert parse_model_settings({}, WHERE).mode is None
    assert parse_model_settings({"on_error": None}, WHERE).on_error == "null"  # Jinja none, YAML null
    settings = parse_model_settings({"on_error": "fail", "model": "gpt-4o", "max_cost_usd": 1, "mode": "batch"}, WHERE)
    assert (settings.on_error, settings.model, settings.max_cost_usd, settings.mode) == ("fail", "gpt-4o", 1.0, "batch")
    assert isinstance(settings.max_cost_usd, float)


def test_a_command_without_the_post_hook_is_a_preview_answered_realtime() -> None:
    assert call_mode("batch", hooked=False, provider="local", where=WHERE) == "realtime"
    assert call_mode("batch", hooked=True, provider="openai", where=WHERE) == "batch"
    assert call_mode("batch", hooked=True, provider="azure", where=WHERE) == "batch"
    with pytest.raises(SpecError, match="batch mode needs a provider with a Batch API"):
        call_mode("batch", hooked=True, provider="local", where=WHERE)
    with pytest.raises(SpecError, match="dbt_llm_mode is 'fast'; use realtime or batch"):
        call_mode("fast", hooked=False, provider="openai", where=WHERE)
    keys = ("inv", "model.p.m", "", "classify", "gpt-4o-mini")
    assert Ledger(*keys, provider="openai", command="show", hooked=False).final_status() == "preview"
    assert Ledger(*keys, provider="openai", command="snapshot", hooked=True).final_status() == "success"
