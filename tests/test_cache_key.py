"""The cache key: every answer-relevant parameter changes it; equal requests give equal keys."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dbt_llm import build_task, cache_key

DEFAULTS: dict[str, Any] = {"provider": "openai", "default_model": "gpt-4o-mini", "temperature": 0.0}
label = st.text(min_size=1, max_size=12).filter(lambda s: s.strip() != "")
labels = st.lists(label, min_size=2, max_size=6, unique=True)  # llm_classify refuses a single label


def key(args: dict[str, Any], text: str, **options: Any) -> str:
    task = build_task({"function": "classify", **args}, **{**DEFAULTS, **options})
    return cache_key(task.spec_hash, text)


@given(labels=labels, text=st.text(max_size=50), other=st.text(max_size=50))
def test_input_text_changes_the_key(labels: list[str], text: str, other: str) -> None:
    assert (key({"labels": labels}, text) == key({"labels": labels}, other)) == (text == other)


@given(labels=labels, extra=label, text=st.text(max_size=20))
def test_labels_and_their_order_change_the_key(labels: list[str], extra: str, text: str) -> None:
    base = key({"labels": labels}, text)
    if extra not in labels:
        assert key({"labels": [*labels, extra]}, text) != base
    if len(labels) > 1:
        assert key({"labels": list(reversed(labels))}, text) != base
    assert key({"labels": {name: "a description" for name in labels}}, text) != base


@given(labels=labels, instructions=st.text(min_size=1, max_size=30), text=st.text(max_size=20))
def test_model_instructions_temperature_provider_change_the_key(
    labels: list[str], instructions: str, text: str
) -> None:
    base = key({"labels": labels}, text)
    assert key({"labels": labels, "model": "gpt-4o"}, text) != base
    assert key({"labels": labels, "instructions": instructions}, text) != base
    assert key({"labels": labels}, text, temperature=0.7) != base
    assert key({"labels": labels}, text, provider="local") != base
    # The default model named explicitly is the same request.
    assert key({"labels": labels, "model": "gpt-4o-mini"}, text) == base


def test_extract_schema_and_template_version_are_in_the_spec() -> None:
    a = build_task({"function": "extract", "fields": {"city": "string"}}, **DEFAULTS)
    b = build_task({"function": "extract", "fields": {"city": "string", "zip": "integer"}}, **DEFAULTS)
    c = build_task({"function": "extract", "fields": {"city": ["Paris", "Oslo"]}}, **DEFAULTS)
    assert len({a.spec_hash, b.spec_hash, c.spec_hash}) == 3
    assert a.spec["template"] == "extract/5" and len(a.spec_hash) == 64


def test_keys_are_equal_across_processes() -> None:
    code = (
        "from dbt_llm import build_task, cache_key;"
        "t = build_task({'function': 'classify', 'labels': {'é': 'x', 'b': None}, 'instructions': 'ñ'},"
        " provider='openai', default_model='m', temperature=0.0);"
        "print(cache_key(t.spec_hash, 'naïve 日本 \\n text'))"
    )
    out = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": seed}
        ).stdout.strip()
        for seed in ("0", "1", "2")
    }
    expected = key({"labels": {"é": "x", "b": None}, "instructions": "ñ"}, "naïve 日本 \n text", default_model="m")
    assert out == {expected}


def test_sql_and_python_compute_the_same_key() -> None:
    import duckdb

    task = build_task({"function": "classify", "labels": ["a", "b"]}, **DEFAULTS)
    text = "Grüße, 'quoted' — 日本語 🎉"
    sql_key = duckdb.sql("select sha256($h || $t)", params={"h": task.spec_hash, "t": text}).fetchall()[0]
    assert sql_key == (cache_key(task.spec_hash, text),)


def test_a_new_prompt_template_version_changes_every_key(monkeypatch: pytest.MonkeyPatch) -> None:
    from dbt_llm.functions import prompts

    before = key({"labels": ["a", "b"]}, "some text")
    monkeypatch.setitem(prompts.TEMPLATE_VERSIONS, "classify", "classify/2")
    assert key({"labels": ["a", "b"]}, "some text") != before
