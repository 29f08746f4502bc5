"""provider: anthropic end to end: real dbt runs against the fake Messages API (tests/anthropic_server.py).
Classify and extract answered through /v1/messages; a long label list read from the prompt cache from
the second row on; the audit's tokens (input, cache writes, cache reads, output) and cost equal to
what the server billed, at Claude's prices; batch mode through Message Batches at half price; a run
killed while it waits, then a run that collects the same batch and creates none; the gateway headers
on every request, and the key nowhere in logs, target/, the tables or error text."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic_server import FakeAnthropic
from conftest import API_KEY, DbtProject, make_project

from dbt_llm.pricing import PriceTable

pytestmark = pytest.mark.dbt

MODEL = "claude-haiku-4-5"
GATEWAY_SECRET = "gw-secret-5a9e3c7d11f2"
N = 12
BATCH = ("--vars", "{dbt_llm_mode: batch}")
LABELS = {
    f"topic_{i}": f"the customer writes about product area number {i}, its settings, its invoices and its errors"
    for i in range(60)
}


@pytest.fixture
def claude(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DbtProject]:
    with FakeAnthropic(api_key=API_KEY, hang_seconds=5.0) as fake:
        project = make_project(tmp_path, fake, monkeypatch, example=False)
        monkeypatch.setenv("DBT_LLM_TEST_GATEWAY", GATEWAY_SECRET)
        project.plugin_config = {
            "provider": "anthropic",
            "base_url": fake.base_url,
            "api_key_env": "DBT_LLM_TEST_KEY",
            "max_concurrency": 4,
            "request_timeout": 5.0,
            "max_attempts": 4,
            "batch_poll_interval": 0.05,
            "headers": {"HTTP-Referer": "https://example.com/dbt", "X-Gateway-Key": {"env": "DBT_LLM_TEST_GATEWAY"}},
        }
        yield project


def fake_of(project: DbtProject) -> FakeAnthropic:
    assert isinstance(project.server, FakeAnthropic)
    return project.server


def tickets(project: DbtProject, labels: Any = ("billing", "bug", "feature"), *, seed: bool = True) -> None:
    """N tickets that all name the label `bug` (or `topic_7`) and the city Paris, and the model m classifying them."""
    word = "topic_7" if isinstance(labels, dict) else "bug"
    rows = ["id,body"] + [f"{i},ticket {i}: a {word}; city: Paris; day: 2024-05-0{i % 9 + 1}" for i in range(N)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    given = dict(labels) if isinstance(labels, dict) else list(labels)
    classify = f"{{{{ dbt_llm.llm_classify('body', {given!r}) }}}}"
    project.write("models/m.sql", f"select id, {classify} as l from {{{{ ref('t') }}}}\n")
    if seed:
        project.dbt("seed")


def audit(project: DbtProject) -> list[tuple[Any, ...]]:
    return project.query(
        "select function, api_calls, prompt_tokens, cached_prompt_tokens, cache_write_tokens, completion_tokens, "
        "cost_usd, batch_answers from dbt_llm.llm_audit order by function"
    )


def billed(records: list[Any], *, batch: bool = False) -> tuple[int, int, int, int, float]:
    """(prompt, cache reads, cache writes, output, USD) of what the server answered, at Claude's prices."""
    price = PriceTable().price(MODEL, batch=batch)
    assert price is not None
    answered = [r for r in records if r.status == 200]
    cost = sum(
        price.cost(r.prompt_tokens, r.completion_tokens, r.cached_tokens, r.cache_write_tokens) for r in answered
    )
    return (
        sum(r.prompt_tokens for r in answered),
        sum(r.cached_tokens for r in answered),
        sum(r.cache_write_tokens for r in answered),
        sum(r.completion_tokens for r in answered),
        cost,
    )


def test_classify_and_extract_are_answered_through_messages_and_the_audit_is_the_bill(claude: DbtProject) -> None:
    fake = fake_of(claude)
    tickets(claude)
    claude.write(
        "models/x.sql",
        "select id, {{ dbt_llm.llm_extract('body', {'city': 'string', 'day': 'date'}) }} as x from {{ ref('t') }}\n",
    )
    claude.dbt("run")
    assert claude.query("select count(*), count(l), count(distinct l) from m")[0] == (N, N, 1)
    assert claude.query("select count(x.city), min(x.city) from x")[0] == (N, "Paris")
    records = fake.requests
    assert len(records) == 2 * N and all(r.status == 200 and r.schema for r in records)
    assert all(r.body["output_config"]["format"]["type"] == "json_schema" for r in records)
    assert {path for _, path, _ in fake.seen_headers} == {"/v1/messages"}
    for function, calls, prompt, cached, written, completion, cost, _ in audit(claude):
        mine = [r for r in records if ("label" in r.schema["properties"]) == (function == "classify")]
        assert calls == N and (prompt, cached, written, completion) == billed(mine)[:4]
        assert cost == pytest.approx(billed(mine)[4])
    claude.dbt("run")  # the cache answers: nothing sent again
    assert len(fake.requests) == 2 * N


def test_a_long_label_list_is_served_from_the_prompt_cache_from_the_second_row_on(claude: DbtProject) -> None:
    fake = fake_of(claude)
    tickets(claude, LABELS)
    claude.dbt("run")
    records = fake.requests
    assert len(records) == N and all(r.status == 200 for r in records)
    writes = [r for r in records if r.cache_write_tokens]
    assert len(writes) == 1 and writes[0].cache_write_tokens >= 1024  # the first sight writes it
    assert all(r.cached_tokens == writes[0].cache_write_tokens for r in records if r is not writes[0])
    [(_, calls, prompt, cached, written, completion, cost, _)] = audit(claude)
    assert (
        calls == N
        and (prompt, cached, written, completion) == billed(records)[:4]
        and cost == pytest.approx(billed(records)[4])
    )
    assert cached > 0.8 * prompt  # most prompt tokens came from the cache
    uncached = PriceTable().price(MODEL).cost(prompt, completion)  # type: ignore[union-attr]
    assert cost < 0.3 * uncached  # cache reads bill at a tenth of the input price


def test_batch_mode_goes_through_message_batches_at_half_price(claude: DbtProject) -> None:
    fake = fake_of(claude)
    tickets(claude)
    fake.inject_batch_line("expired", match="ticket 3:")  # retried realtime, paid once
    claude.dbt("run", *BATCH)
    [batch] = fake.message_batches
    assert len(batch.requests) == N and [r.text for r in fake.requests] == [
        "ticket 3: a bug; city: Paris; day: 2024-05-04"
    ]
    assert claude.query("select count(l) from m")[0][0] == N
    [(_, calls, prompt, cached, written, completion, cost, answers)] = audit(claude)
    lines = billed(fake.batch_requests, batch=True)
    realtime = billed(fake.requests)
    assert (calls, answers) == (N + 1, N - 1)
    assert (prompt, completion) == (lines[0] + realtime[0], lines[3] + realtime[3])
    assert (cached, written) == (lines[1] + realtime[1], lines[2] + realtime[2]) == (0, 0)  # a short prompt
    assert cost == pytest.approx(lines[4] + realtime[4])
    assert lines[4] == pytest.approx(billed(fake.batch_requests)[4] / 2)  # half the list price
    jobs = claude.query(
        "select job_id, provider, status, requests, collected_at is not null from dbt_llm.llm_batch_jobs"
    )
    assert jobs == [(batch.id, "anthropic", "ended", N, True)]
    claude.dbt("run", *BATCH)
    assert len(fake.message_batches) == 1 and len(fake.requests) == 1


def test_a_run_killed_while_it_waits_is_collected_by_the_next_run_which_creates_no_batch(claude: DbtProject) -> None:
    fake = fake_of(claude)
    fake.batch_delay = 3.0
    tickets(claude, seed=False)
    claude.write_profiles()
    # In processes of their own: an in-process dbt run keeps the DuckDB file locked.
    dbt = [str(Path(sys.executable).with_name("dbt"))]
    where = ["--project-dir", str(claude.root), "--profiles-dir", str(claude.root)]
    subprocess.run([*dbt, "seed", *where], check=True, capture_output=True)
    proc = subprocess.Popen([*dbt, "run", *BATCH, *where], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, deadline = claude.root / "logs" / "dbt.log", time.monotonic() + 60
    while time.monotonic() < deadline and not (log.exists() and "recorded in llm_batch_jobs" in log.read_text()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    [batch] = fake.message_batches
    assert batch.ended_at is None  # killed while it waited

    claude.dbt("run", *BATCH)
    assert [b.id for b in fake.message_batches] == [batch.id] and fake.requests == []
    assert claude.query("select count(l) from m")[0][0] == N
    assert claude.query("select job_id, collected_at is not null from dbt_llm.llm_batch_jobs") == [(batch.id, True)]


def test_headers_go_with_every_request_and_the_key_is_nowhere(
    claude: DbtProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = fake_of(claude)
    tickets(claude)
    claude.write(
        "models/b.sql", "select id, {{ dbt_llm.llm_filter('body', 'Is it a bug?') }} as f from {{ ref('t') }}\n"
    )
    fake.inject("529", match="ticket 1:")
    claude.dbt("run", "--select", "m")
    claude.dbt("run", "--select", "b", *BATCH)
    monkeypatch.setenv("DBT_LLM_TEST_KEY", API_KEY[:-1] + "X")  # a refused key: its error text is checked too
    claude.execute("delete from dbt_llm.llm_cache where key in (select key from dbt_llm.llm_cache limit 1)")
    refused = claude.dbt("run", ok=False)
    texts = [str(refused.exception)] + [str(r.message) for r in refused.result or []]
    for path in claude.root.rglob("*"):
        if path.is_file() and "dbt_packages" not in path.parts and path.suffix != ".duckdb":
            texts.append(path.read_text(errors="replace"))
    tables = claude.query(
        "select table_schema, table_name, column_name from information_schema.columns where data_type = 'VARCHAR'"
    )
    for schema, table, column in tables:
        texts += [str(v[0]) for v in claude.query(f'select "{column}" from "{schema}"."{table}"')]
    assert any("refused the API key" in t and "DBT_LLM_TEST_KEY" in t for t in texts)
    for text in texts:
        assert API_KEY not in text and API_KEY[:-1] not in text and GATEWAY_SECRET not in text
    seen = fake.seen_headers
    assert {path.rsplit("/", 1)[-1] if "msgbatch" in path else path for _, path, _ in seen} >= {
        "/v1/messages",
        "/v1/messages/batches",
        "results",
    }
    for method, path, sent in seen:
        assert sent.get("x-api-key", "").startswith(API_KEY[:-1]), (method, path)
        assert sent.get("X-Gateway-Key") == GATEWAY_SECRET and sent.get("HTTP-Referer"), (method, path)


def test_embeddings_and_confidence_are_refused_when_the_model_compiles(claude: DbtProject) -> None:
    tickets(claude)
    claude.write("models/e.sql", "select id, {{ dbt_llm.llm_embed('body') }} as e from {{ ref('t') }}\n")
    claude.write(
        "models/c.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['bug', 'billing'], with_confidence=true) }} as c "
        "from {{ ref('t') }}\n",
    )
    result = claude.dbt("run", "--select", "e", "c", ok=False)
    messages = {str(r.node.name): str(r.message) for r in result.result}
    assert "llm_embed needs embeddings, and Anthropic serves none" in messages["e"]
    assert "with_confidence=true needs token logprobs, and Claude gives none" in messages["c"]
    assert fake_of(claude).requests == []
