"""Faults, per-row failures, on_error, budgets and refused keys, in real dbt runs."""

from __future__ import annotations

import pytest
from conftest import PRICES, DbtProject

N = 40
LABELS = "['billing', 'bug', 'feature']"


def setup_tickets(project: DbtProject, materialized: str = "table") -> None:
    rows = ["id,body"] + [
        f'{i},"ticket {i}: ' + ("refund my card" if i % 3 else "the app crashes") + '"' for i in range(N)
    ]
    project.write("seeds/tickets.csv", "\n".join(rows) + "\n")
    project.write(
        "models/classified.sql",
        f"{{{{ config(materialized='{materialized}') }}}}\n"
        f"select id, body, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as label from {{{{ ref('tickets') }}}}\n",
    )
    project.dbt("seed")


def test_transient_faults_are_retried_and_each_answer_paid_once(project: DbtProject) -> None:
    project.plugin_config["request_timeout"] = 3.0
    project.server.hang_seconds = 6.0  # longer than the timeout: the client cuts it
    setup_tickets(project)
    for kind, times in [
        ("429", 3),
        ("500", 2),
        ("503", 1),
        ("502_html", 1),
        ("timeout", 1),
        ("invalid", 2),
        ("truncated", 1),
    ]:
        project.server.inject(kind, times=times)
    project.dbt("run")

    assert project.query("select count(*), count(label) from classified")[0] == (N, N)
    answered = project.server.answered()
    assert len(answered) == N and len({r.text for r in answered}) == N  # each valid answer exactly once
    reqs = project.server.requests
    audit = project.query(
        "select api_calls, retries, failed_rows, prompt_tokens, completion_tokens, rate_limited from dbt_llm.llm_audit"
    )
    assert audit[0][5] == 3
    # A hung request is cut by the client and the server records it only when it gives up, so count the rest.
    assert audit[0][1] == 11 and audit[0][2] == 0
    assert audit[0][0] == N + 11
    assert audit[0][3] == sum(r.prompt_tokens for r in reqs if r.status == 200)
    assert audit[0][4] == sum(r.completion_tokens for r in reqs if r.status == 200)


def test_failed_rows_fail_the_model_after_all_rows_and_are_retried_next_run(project: DbtProject) -> None:
    project.plugin_config["max_attempts"] = 2
    setup_tickets(project)
    project.server.inject("500", times=2, match="ticket 7:")
    result = project.dbt("run", ok=False)
    message = str(result.result.results[0].message) if result.result else str(result.exception)
    assert "1 row(s)" in message and "llm_errors" in message and "on_error: null" in message

    errors = project.query("select error_kind, attempts, message, input_preview from dbt_llm.llm_errors")
    assert len(errors) == 1
    kind, attempts, text, preview = errors[0]
    assert (kind, attempts) == ("retries_exhausted", 2) and "500" in text and preview.startswith("ticket 7:")
    # Every other row was paid for and kept, although the model failed.
    assert project.query("select count(*) from dbt_llm.llm_cache")[0][0] == N - 1
    assert project.query("select failed_rows, status from dbt_llm.llm_audit")[0] == (1, "failed_rows")

    project.server.reset()
    project.dbt("run")
    assert [r.text for r in project.server.requests] == ["ticket 7: refund my card"]
    assert project.query("select count(label) from classified")[0][0] == N


def test_on_error_null_keeps_going_with_recorded_nulls(project: DbtProject) -> None:
    project.plugin_config.update(max_attempts=1, on_error="null")
    setup_tickets(project)
    project.server.inject("invalid", times=1, match="ticket 5:")
    project.dbt("run")
    assert project.query("select count(*), count(label) from classified")[0] == (N, N - 1)
    assert project.query("select id from classified where label is null") == [(5,)]
    assert project.query("select error_kind from dbt_llm.llm_errors") == [("invalid_answer",)]


def test_row_timeout_bounds_the_retries_of_one_row(project: DbtProject) -> None:
    # Many attempts allowed, but one row may only take about a second of retries.
    project.plugin_config.update(max_attempts=50, row_timeout=1.0, on_error="null")
    setup_tickets(project)
    project.server.inject("500", times=1000, match="ticket 3:")
    project.dbt("run")
    kind, attempts, message = project.query("select error_kind, attempts, message from dbt_llm.llm_errors")[0]
    assert kind == "row_timeout" and "row_timeout=1s" in message and "500" in message
    assert 2 <= attempts < 50
    assert project.query("select count(label) from classified")[0][0] == N - 1


def test_budget_stops_calls_keeps_paid_answers_and_says_so(project: DbtProject) -> None:
    # Each call here costs about $0.00001 and 8 are in flight at once; the cap allows about 19.
    cap = 0.0002
    project.plugin_config.update(max_cost_usd=cap, max_concurrency=8)
    project.server.latency = 0.05  # answers overlap
    setup_tickets(project)
    result = project.dbt("run", ok=False)
    message = str(result.result.results[0].message)
    assert "budget" in message and "max_cost_usd" in message and "row(s) are left" in message
    answered = project.server.answered()
    paid = len(answered)
    assert 8 < paid < N
    price = PRICES["gpt-4o-mini"]
    costs = [(r.prompt_tokens * price["input"] + r.completion_tokens * price["output"]) / 1e6 for r in answered]
    spent = project.query("select sum(cost_usd) from dbt_llm.llm_audit")[0][0]
    assert spent == pytest.approx(sum(costs))
    # Each request reserves its estimated cost before it is sent, so what is in flight cannot carry the
    # spend past the cap; only the estimate's error can: here at most a token per message and one of the
    # answer (the fake server bills 4 characters a token, as the estimate counts), for each of 8 in flight.
    error = (2 * price["input"] + price["output"]) / 1e6
    assert spent <= cap + 8 * error
    # And it stops within about one request of the cap: it only refuses one that cannot fit.
    assert spent >= cap - max(costs) - error
    assert project.query("select count(*) from dbt_llm.llm_cache")[0][0] == paid

    project.plugin_config["max_cost_usd"] = None
    project.server.reset()
    project.dbt("run")
    assert len(project.server.requests) == N - paid


def test_missing_key_fails_before_any_request_and_cached_runs_need_none(
    project: DbtProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    setup_tickets(project)
    monkeypatch.delenv("DBT_LLM_TEST_KEY")
    result = project.dbt("run", ok=False)
    assert "DBT_LLM_TEST_KEY" in str(result.result.results[0].message)
    assert project.server.requests == []

    monkeypatch.setenv("DBT_LLM_TEST_KEY", "sk-test-0123456789abcdef-SECRET")
    project.dbt("run")
    monkeypatch.delenv("DBT_LLM_TEST_KEY")
    project.server.reset()
    project.dbt("run")  # fully cached: no key needed
    assert project.server.requests == []


def test_refused_key_stops_the_model_with_a_fix(project: DbtProject, monkeypatch: pytest.MonkeyPatch) -> None:
    setup_tickets(project)
    monkeypatch.setenv("DBT_LLM_TEST_KEY", "sk-wrong-key")
    result = project.dbt("run", ok=False)
    message = str(result.result.results[0].message)
    assert "refused the API key" in message and "api_key_env" in message
    assert "sk-wrong-key" not in message
