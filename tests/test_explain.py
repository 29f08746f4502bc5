"""`dbt-llm explain`: the request a row sends, shown with no call, is the one a real run then sends and caches."""

from __future__ import annotations

import json
from typing import Any

import pytest
from conftest import DbtProject

from dbt_llm.cli import main

MODEL = """
select id, body,
  {{ dbt_llm.llm_classify('body', {'billing': 'money, invoices', 'bug': none, 'other': none},
                          instructions='Tickets of a SaaS product.') }} as category,
  {{ dbt_llm.llm_extract('body', {'amount': 'number', 'product': 'string'}, model='gpt-4o') }} as fields
from {{ ref('t') }}
"""
TEXT = "my invoice for Widget Pro says 40 dollars"


def explain(project: DbtProject, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    project.write_profiles()
    capsys.readouterr()  # what dbt printed before
    code = main(["explain", "--project-dir", str(project.root), "--profiles-dir", str(project.root), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_the_explained_request_is_the_one_a_run_sends_and_its_key_the_one_it_caches(
    project: DbtProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("seeds/t.csv", f"id,body\n1,{TEXT}\n2,the app crashes on login\n")
    project.write("models/m.sql", MODEL)
    project.dbt("seed")
    code, out, err = explain(project, capsys, "--select", "m", "--text", f"  {TEXT}\n", "--format", "json")
    assert code == 0, err
    assert project.server.requests == []  # nothing sent
    calls = {c["function"]: c for c in json.loads(out)["calls"]}
    assert set(calls) == {"classify", "extract"}
    assert calls["classify"]["text"] == TEXT  # trimmed as the call's SQL trims it
    assert calls["extract"]["model"] == "gpt-4o" and calls["classify"]["model"] == "gpt-4o-mini"

    project.dbt("run")
    received: list[dict[str, Any]] = [r.body for r in project.server.requests if r.text == TEXT]
    assert len(received) == 2
    for function, call in calls.items():
        # The body as the fake server received it: messages, schema, model, max_tokens, logprobs.
        assert call["body"] in received, function
        # The key the run wrote for that text, and only for it.
        assert project.query("select count(*) from dbt_llm.llm_cache where key = ?", [call["key"]]) == [(1,)]
    [(cached,)] = project.query("select result from dbt_llm.llm_cache where key = ?", [calls["classify"]["key"]])
    assert project.query("select category from m where id = 1") == [(json.loads(cached)["label"],)]
    # Without --text, once the model is built: a row of it, under the key its run cached.
    code, out, err = explain(project, capsys, "--select", "m", "--format", "json")
    assert code == 0, err
    for call in json.loads(out)["calls"]:
        assert call["text"] in (TEXT, "the app crashes on login")
        assert call["text_from"] == 'a row of "warehouse"."main"."m", the model\'s last build'
        assert project.query("select count(*) from dbt_llm.llm_cache where key = ?", [call["key"]]) == [(1,)]
    assert calls["classify"]["body"]["response_format"]["json_schema"]["schema"]["properties"]["label"]["enum"] == [
        "billing",
        "bug",
        "other",
    ]


def test_the_text_view_shows_messages_schema_and_key_and_a_placeholder_without_text(
    project: DbtProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("seeds/t.csv", "id,body\n1,x\n")
    project.write("models/m.sql", MODEL)
    code, out, err = explain(project, capsys, "--select", "m", "--text", TEXT)
    assert code == 0, err
    assert "== llm_classify(body) in model.dbt_llm_example.m" in out
    assert "-- system:" in out and "Tickets of a SaaS product." in out and TEXT in out
    assert "-- response schema:" in out and '"billing"' in out
    assert out.count("cache key: ") == 2

    code, out, err = explain(project, capsys, "--select", "m")
    assert code == 0, err
    assert "cache key" not in out and "(a placeholder: no row's text, so no key)" in out
    assert "<the text of a row: pass --text '...'>" in out
    assert project.server.requests == []


CASCADE = """
select id, {{{{ dbt_llm.llm_classify('body', ['billing', 'bug', 'other'], {model}) }}}} as category
from {{{{ ref('t') }}}}
"""


def test_a_cascade_shows_the_escalated_request_under_the_plain_call_s_key(
    project: DbtProject, capsys: pytest.CaptureFixture[str]
) -> None:
    project.write("seeds/t.csv", "id,body\n1,x\n")
    project.write("models/cascade.sql", CASCADE.format(model="escalate_to='gpt-4o', escalate_below=0.8"))
    project.write("models/large.sql", CASCADE.format(model="model='gpt-4o'"))
    code, out, err = explain(project, capsys, "--select", "cascade", "--text", TEXT, "--format", "json")
    assert code == 0, err
    [call] = json.loads(out)["calls"]
    code, out, err = explain(project, capsys, "--select", "large", "--text", TEXT, "--format", "json")
    [large] = json.loads(out)["calls"]
    assert call["model"] == "gpt-4o-mini" and call["escalated"]["below"] == 0.8
    assert (call["escalated"]["key"], call["escalated"]["body"]) == (large["key"], large["body"])
    assert call["key"] != large["key"]


def test_a_wrong_model_or_one_without_calls_says_so(project: DbtProject, capsys: pytest.CaptureFixture[str]) -> None:
    project.write("models/plain.sql", "select 1 as id")
    code, _, err = explain(project, capsys, "--select", "nope")
    assert code == 1 and "no model is named nope" in err
    code, _, err = explain(project, capsys, "--select", "plain")
    assert code == 1 and "model.dbt_llm_example.plain makes no dbt_llm call" in err
