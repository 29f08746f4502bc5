"""A provider that never answered fails fast, all calls together; one that went away mid-run is
waited for (test_outage.py). A missing key, a refused key or a wrong route stop the model with a
status that says so, their rows in llm_errors and every request sent counted."""

from __future__ import annotations

import socket
import time

import httpx
import pytest
from conftest import DbtProject

from dbt_llm.engine import Budget, Engine, EngineSettings, Request
from dbt_llm.engine.outage import Outage
from dbt_llm.functions.tasks import build_task, cache_key
from dbt_llm.pricing import PriceTable
from dbt_llm.providers import OpenAIProvider

TASK = build_task(
    {"function": "classify", "labels": ["billing", "bug"]}, provider="openai", default_model="m", temperature=0.0
)
CHAT = {
    "choices": [{"message": {"content": '{"label": "bug"}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 10, "completion_tokens": 3},
}


def closed_port() -> int:
    """A port with nothing listening: bound, read, closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def engine_run(answers_first: int, *, rows: int = 12, row_timeout: float = 60.0) -> tuple[list[str | None], float]:
    """Rows through an engine whose provider answers `answers_first` requests, then refuses every
    connection; the gate gives a provider that never answered up after 0.3 s. Returns each row's
    error_kind and the seconds it took."""
    sent = [0]

    def handler(request: httpx.Request) -> httpx.Response:
        sent[0] += 1
        if sent[0] <= answers_first:
            return httpx.Response(200, json=CHAT)
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    engine = Engine(
        lambda: OpenAIProvider(
            base_url="http://provider.test/v1",
            api_key=lambda: "k",
            timeout=5.0,
            max_connections=1,
            transport=httpx.MockTransport(handler),
        ),
        prices=PriceTable(free=True),
        settings=EngineSettings(max_concurrency=1, max_attempts=3, row_timeout=row_timeout),
        outage=Outage(first_delay=0.01, max_delay=0.05, jitter=lambda: 1.0, unreachable_after=0.3),
    )
    budget = Budget(None)
    requests = [Request(cache_key(TASK.spec_hash, f"t{i}"), TASK, f"t{i}", budget) for i in range(rows)]
    started = time.monotonic()
    try:
        outcomes = engine.wait(engine.submit(requests, lambda _o: None))
    finally:
        engine.close()
    return [o.error_kind for o in outcomes], time.monotonic() - started


def test_a_provider_that_never_answered_fails_every_waiting_row_at_once() -> None:
    kinds, took = engine_run(answers_first=0)
    assert set(kinds) == {"unreachable"}
    assert took < 5  # the gate's 0.3 s and a few probes, not row_timeout=60 s


def test_a_provider_that_went_away_mid_run_is_waited_for_up_to_row_timeout() -> None:
    kinds, took = engine_run(answers_first=2, row_timeout=1.5)
    assert kinds[:2] == [None, None]
    assert set(kinds[2:]) == {"row_timeout"}  # not given up: it answered in this run
    assert took >= 1.4


def errors(project: DbtProject) -> list[tuple[str, str, str]]:
    return project.query("select function, error_kind, message from dbt_llm.llm_errors order by function")


def statuses(project: DbtProject) -> list[tuple[str, str, int]]:
    return project.query("select function, status, skipped_rows from dbt_llm.llm_audit order by function")


def three_functions(project: DbtProject, rows: int = 3) -> None:
    seed = "".join(f"{i},ticket {i}: my card in Paris\n" for i in range(rows))
    project.write("seeds/tickets.csv", "id,body\n" + seed)
    project.write(
        "models/enriched.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['billing', 'bug']) }} as label, "
        "{{ dbt_llm.llm_filter('body', 'Is it about a card?') }} as about_card, "
        "{{ dbt_llm.llm_extract('body', {'city': 'string'}) }} as place from {{ ref('tickets') }}\n",
    )
    project.dbt("seed")


def dbt_output(project: DbtProject, capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    return captured.out + captured.err + (project.root / "logs" / "dbt.log").read_text()


def test_nothing_listening_at_base_url_fails_all_functions_within_90s(
    project: DbtProject, capsys: pytest.CaptureFixture[str]
) -> None:
    three_functions(project)
    url = f"http://127.0.0.1:{closed_port()}/v1"
    project.plugin_config.update(base_url=url, row_timeout=600, progress_interval=2.0)
    started = time.monotonic()
    result = project.dbt("run", ok=False)
    took = time.monotonic() - started
    assert took < 90, f"took {took:.0f}s"  # today each function waited its row_timeout, one after the other
    message = str(result.result.results[0].message)
    assert url in message and "connection refused" in message.lower() and "base_url" in message
    rows = errors(project)
    assert rows and {kind for _, kind, _ in rows} == {"unreachable"}
    assert all(url in text and "connection refused" in text.lower() for _, _, text in rows)
    assert {status for _, status, _ in statuses(project)} == {"error"}
    output = dbt_output(project, capsys)
    assert "Traceback" not in output
    # While it waited, the progress line said where and why, and counted no row as answered.
    assert f"the provider is unreachable (cannot connect to base_url {url}" in output
    assert "1/1 texts answered" not in output


def test_a_404_route_from_the_first_request_fails_fast_naming_base_url(project: DbtProject) -> None:
    three_functions(project)
    url = project.server.base_url.removesuffix("/v1")  # the usual mistake: no /v1
    project.plugin_config.update(base_url=url)
    started = time.monotonic()
    result = project.dbt("run", ok=False)
    assert time.monotonic() - started < 60
    message = str(result.result.results[0].message)
    assert f"base_url {url} has answered yet" in message and "ends in /v1" in message
    rows = errors(project)
    assert rows and {kind for _, kind, _ in rows} == {"provider_error"}
    assert all(f"HTTP 404 from {url}/chat/completions" in text for _, _, text in rows)
    assert {status for _, status, _ in statuses(project)} == {"error"}


@pytest.mark.parametrize("value", [None, "  "])
def test_a_missing_key_is_an_error_naming_the_variable_not_a_budget_stop(
    project: DbtProject, monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    three_functions(project)
    if value is None:
        monkeypatch.delenv("DBT_LLM_TEST_KEY")
    else:
        monkeypatch.setenv("DBT_LLM_TEST_KEY", value)
    result = project.dbt("run", ok=False)
    message = str(result.result.results[0].message)
    assert "DBT_LLM_TEST_KEY" in message and "Export the API key" in message
    assert project.server.requests == []
    rows = errors(project)
    assert rows and {kind for _, kind, _ in rows} == {"config_error"}
    assert all("DBT_LLM_TEST_KEY" in text for _, _, text in rows)
    audit = statuses(project)
    assert {status for _, status, _ in audit} == {"error"} and all(skipped == 0 for _, _, skipped in audit)


def test_a_refused_key_counts_every_request_it_sent(
    project: DbtProject, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    n = 40
    project.write("seeds/tickets.csv", "id,body\n" + "".join(f"{i},ticket {i}\n" for i in range(n)))
    project.write(
        "models/classified.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['billing', 'bug']) }} as label from {{ ref('tickets') }}\n",
    )
    project.dbt("seed")
    monkeypatch.setenv("DBT_LLM_TEST_KEY", "sk-wrong-key")
    project.dbt("run", ok=False)
    sent = len(project.server.requests)
    assert 0 < sent < n  # the requests in flight at the first 401, not one per row
    api_calls, status, failed = project.query("select api_calls, status, failed_rows from dbt_llm.llm_audit")[0]
    assert (api_calls, status) == (sent, "error") and failed > 0
    assert f"{sent} API calls" in dbt_output(project, capsys)
    assert project.query("select count(*) from dbt_llm.llm_errors where error_kind = 'provider_error'")[0][0] > 0
