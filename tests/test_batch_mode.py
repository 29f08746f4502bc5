"""Batch mode end to end: real dbt runs against the fake server's Batch API (files, batches, shuffled
output), with the answers in the same cache as realtime and the jobs in llm_batch_jobs."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DbtProject

N = 30
LABELS = "['billing', 'bug', 'feature']"
BATCH = ("--vars", "{dbt_llm_mode: batch}")


def write_tickets(project: DbtProject) -> None:
    project.plugin_config.update(batch_poll_interval=0.05)
    rows = ["id,body"] + [f"{i},ticket {i}: my invoice is wrong" for i in range(N)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.write(
        "models/m.sql", f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"
    )


@pytest.fixture
def tickets(project: DbtProject) -> DbtProject:
    write_tickets(project)
    project.dbt("seed")
    return project


def test_a_batch_run_answers_every_row_at_half_price_and_a_rerun_sends_nothing(tickets: DbtProject) -> None:
    server = tickets.server
    tickets.dbt("run", *BATCH)
    assert server.requests == []  # nothing realtime
    assert len(server.batches) == 1 and len(set(server.batches[0].custom_ids)) == N
    assert tickets.query("select count(*), count(l) from m")[0] == (N, N)
    calls, answers, prompt, completion, cost = tickets.query(
        "select api_calls, batch_answers, prompt_tokens, completion_tokens, cost_usd from dbt_llm.llm_audit"
    )[0]
    billed = server.batch_requests
    assert (calls, answers) == (N, N)
    assert (prompt, completion) == (sum(r.prompt_tokens for r in billed), sum(r.completion_tokens for r in billed))
    assert cost == pytest.approx((prompt * 0.15 + completion * 0.60) / 2 / 1e6)  # half the list price
    (saved,) = tickets.query("select batch_saved_usd from dbt_llm.llm_audit")[0]
    assert saved == pytest.approx(cost)  # the other half: what batch mode saved against list price
    jobs = tickets.query("select job_id, status, requests, collected_at is not null from dbt_llm.llm_batch_jobs")
    assert jobs == [(server.batches[0].id, "completed", N, True)]

    tickets.dbt("run", *BATCH)
    tickets.dbt("run")  # realtime reuses the batch answers: one cache
    assert len(server.batches) == 1 and server.requests == []


def test_failed_and_invalid_lines_are_retried_realtime_and_each_answer_is_paid_once(tickets: DbtProject) -> None:
    server = tickets.server
    server.inject_batch_line("500", match="ticket 3:")
    server.inject_batch_line("invalid", match="ticket 5:")
    tickets.dbt("run", *BATCH)
    assert sorted(r.text for r in server.requests) == ["ticket 3: my invoice is wrong", "ticket 5: my invoice is wrong"]
    assert len(server.batches) == 1
    assert tickets.query("select count(l) from m")[0][0] == N
    answers, calls = tickets.query("select batch_answers, api_calls from dbt_llm.llm_audit")[0]
    assert answers == N - 2 and calls == N + 2  # 30 batch lines, then 2 realtime requests
    valid = {r.text for r in server.batch_answered()} | {r.text for r in server.answered()}
    assert len(valid) == N and len(server.batch_answered()) + len(server.answered()) == N


def test_batch_fallback_batch_sends_a_follow_up_job(tickets: DbtProject) -> None:
    tickets.plugin_config["batch_fallback"] = "batch"
    tickets.server.inject_batch_line("invalid", match="ticket 7:")
    tickets.dbt("run", *BATCH)
    batches = tickets.server.batches
    assert [len(b.custom_ids) for b in batches] == [N, 1] and tickets.server.requests == []
    assert tickets.query("select count(l) from m")[0][0] == N
    assert tickets.query("select count(*) from dbt_llm.llm_batch_jobs where collected_at is not null")[0][0] == 2


def test_batch_timeout_fails_the_model_with_no_nulls_and_the_next_run_collects_the_job(tickets: DbtProject) -> None:
    server = tickets.server
    server.batch_delay = 4.0
    tickets.plugin_config["batch_timeout"] = 1.0
    result = tickets.dbt("run", *BATCH, ok=False)
    message = str(result.result.results[0].message)
    job = server.batches[0].id
    assert job in message and "batch_timeout=1s" in message and "next run collects them" in message
    assert tickets.query("select count(*) from information_schema.tables where table_name = 'm'")[0][0] == 0
    assert tickets.query("select job_id, collected_at from dbt_llm.llm_batch_jobs") == [(job, None)]

    tickets.plugin_config["batch_timeout"] = 60.0
    tickets.dbt("run", *BATCH)
    assert [b.id for b in server.batches] == [job] and server.requests == []  # collected, not sent again
    assert tickets.query("select count(l) from m")[0][0] == N


def test_a_run_killed_while_it_waits_loses_nothing(project: DbtProject) -> None:
    server = project.server
    server.batch_delay = 3.0
    write_tickets(project)
    project.write_profiles()
    # In processes of their own: an in-process dbt run keeps the DuckDB file locked.
    dbt = [str(Path(sys.executable).with_name("dbt"))]
    where = ["--project-dir", str(project.root), "--profiles-dir", str(project.root)]
    subprocess.run([*dbt, "seed", *where], check=True, capture_output=True)
    proc = subprocess.Popen([*dbt, "run", *BATCH, *where], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, deadline = project.root / "logs" / "dbt.log", time.monotonic() + 60
    # The run logs that the job is recorded before it waits: kill it then.
    while time.monotonic() < deadline and not (log.exists() and "recorded in llm_batch_jobs" in log.read_text()):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(server.batches) == 1

    project.dbt("run", *BATCH)
    assert len(server.batches) == 1 and server.requests == []  # the killed run's job, collected
    assert project.query("select count(l) from m")[0][0] == N


def test_a_dry_run_in_batch_mode_estimates_at_the_batch_price(tickets: DbtProject) -> None:
    tickets.dbt("run", "--vars", "{dbt_llm_dry_run: true}")
    realtime = tickets.query("select est_cost_usd from dbt_llm.llm_audit")[0][0]
    tickets.dbt("run", "--vars", "{dbt_llm_dry_run: true, dbt_llm_mode: batch}")
    batch = tickets.query("select est_cost_usd from dbt_llm.llm_audit order by started_at desc limit 1")[0][0]
    assert batch == pytest.approx(realtime / 2)
    assert tickets.server.batches == [] and tickets.server.requests == []


def test_two_models_with_the_same_texts_send_them_in_one_job(tickets: DbtProject) -> None:
    tickets.write(
        "models/m2.sql", f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"
    )
    tickets.dbt("run", *BATCH)
    assert len(tickets.server.batches) == 1 and len(tickets.server.batch_requests) == N  # each text paid once
    assert tickets.query("select count(l) from m")[0][0] == N and tickets.query("select count(l) from m2")[0][0] == N
    audit = tickets.query("select sum(batch_answers), sum(api_calls), sum(rows) from dbt_llm.llm_audit")[0]
    assert audit == (N, N, 2 * N)
