"""A run that dies (kill -9, or a SQL error after the LLM calls) keeps what it paid for."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PRICES, DbtProject

from dbt_llm.cli import COSTS_SQL

LABELS = "['billing', 'bug', 'feature', 'other']"


def write_model(project: DbtProject, n: int, tail: str = "") -> None:
    rows = ["id,body"] + [f"{i},ticket {i} about something" for i in range(n)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.write(
        "models/m.sql",
        f"select * from (select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l "
        f"from {{{{ ref('t') }}}}) {tail}\n",
    )


def test_kill_9_mid_run_then_rerun_pays_only_for_what_was_in_flight(project: DbtProject) -> None:
    n, concurrency = 300, 4
    project.plugin_config["max_concurrency"] = concurrency
    project.server.latency = 0.05
    write_model(project, n)
    project.write_profiles()
    # In a process of its own: an in-process dbt run keeps the DuckDB file locked.
    dbt = [str(Path(sys.executable).with_name("dbt"))]
    where = ["--project-dir", str(project.root), "--profiles-dir", str(project.root)]
    subprocess.run([*dbt, "seed", *where], check=True, capture_output=True)
    proc = subprocess.Popen([*dbt, "run", *where], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline, first_answer = time.monotonic() + 60, None
    while (answered := len(project.server.answered())) < n // 3 and time.monotonic() < deadline:
        if answered and first_answer is None:
            first_answer = time.monotonic()
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    per_second = answered / max(0.01, time.monotonic() - (first_answer or deadline - 60))
    proc.wait()
    time.sleep(0.3)  # the server finishes what was in flight
    paid_before = len(project.server.answered())
    assert n // 3 <= paid_before < n  # killed mid-run

    project.server.reset()
    project.dbt("run")
    assert project.query("select count(*), count(l) from m")[0] == (n, n)
    repaid = len(project.server.answered())
    # Paid twice: only answers in flight at the kill: on the wire (one per concurrency slot) or
    # received since the writer's last commit (batches are at most 0.1 s apart).
    assert n - paid_before <= repaid <= n - paid_before + 2 * concurrency + math.ceil(0.1 * per_second)


def test_sql_error_after_the_calls_keeps_the_answers(project: DbtProject) -> None:
    write_model(project, 30, "where cast(l as integer) = 1")  # fails after every row was classified
    project.dbt("seed")
    result = project.dbt("run", ok=False)
    assert "Conversion Error" in str(result.result.results[0].message)
    assert len(project.server.answered()) == 30
    assert project.query("select count(*) from dbt_llm.llm_cache")[0][0] == 30
    # The statement failed before the post-hook: dbt says the node ended, and the row is settled as an error.
    assert project.query("select api_calls, status from dbt_llm.llm_audit") == [(30, "error")]

    write_model(project, 30)
    project.server.reset()
    project.dbt("run")
    assert project.server.requests == []
    assert project.query("select count(l) from m")[0][0] == 30


def test_kill_9_then_any_dbt_command_settles_the_audit_from_what_was_paid(
    project: DbtProject,
) -> None:
    n = 120
    project.plugin_config["max_concurrency"] = 4
    project.server.latency = 0.05
    write_model(project, n)
    project.write("models/plain.sql", "select 1 as x\n")
    project.write_profiles()
    dbt = [str(Path(sys.executable).with_name("dbt"))]
    where = ["--project-dir", str(project.root), "--profiles-dir", str(project.root)]
    subprocess.run([*dbt, "seed", *where], check=True, capture_output=True)
    proc = subprocess.Popen([*dbt, "run", "-s", "m", *where], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while len(project.server.answered()) < n // 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    # Later requests wait (unanswered, unbilled) while the writer commits every answer that came back:
    # then the answers the server billed are exactly those the killed run cached.
    project.server.latency = 600
    time.sleep(1.5)
    billed = project.server.answered()
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert n // 3 <= len(billed) < n
    assert project.query("select status, api_calls, cost_usd from dbt_llm.llm_audit") == [("running", 0, 0.0)]

    project.server.latency = 0
    project.dbt("run", "-s", "plain")  # a model with no LLM call opens the warehouse with the plugin
    ((status, calls, prompt, completion, cost),) = project.query(
        "select status, api_calls, prompt_tokens, completion_tokens, cost_usd from dbt_llm.llm_audit"
    )
    assert (status, calls) == ("interrupted", len(billed))
    assert (prompt, completion) == (sum(r.prompt_tokens for r in billed), sum(r.completion_tokens for r in billed))
    price = PRICES["gpt-4o-mini"]
    assert cost == pytest.approx((prompt * price["input"] + completion * price["output"]) / 1e6)
    # `dbt-llm costs` counts it (its query, here: the in-process dbt keeps the file open to other processes).
    assert project.query(COSTS_SQL.format(s="dbt_llm", where=""))[0][-1] == round(cost, 6)

    project.dbt("run", "-s", "m")  # the rerun pays only for the rest, and settles its own row as usual
    assert len(project.server.answered()) == len(billed) + (n - len(billed))
    statuses = project.query("select status, api_calls from dbt_llm.llm_audit order by started_at")
    assert statuses == [("interrupted", len(billed)), ("success", n - len(billed))]


def test_a_table_a_killed_dry_run_created_is_dropped_by_the_next_command(project: DbtProject) -> None:
    """The dry run keeps a new incremental model's table (NULLs where a call was needed) for the models
    downstream and drops it when the command ends; killed before that, the next command drops it
    before dbt lists the relations, so a real run never takes it for the model's previous state."""
    write_model(project, 5)
    project.write(
        "models/m.sql", "{{ config(materialized='incremental') }}\n" + (project.root / "models/m.sql").read_text()
    )
    # Downstream of m and slow: the kill lands while it runs, after m's dry-run table was committed.
    project.write("models/slow.sql", "-- depends_on: {{ ref('m') }}\nselect sum(range) as s from range(20000000000)\n")
    project.write_profiles()
    dbt = [str(Path(sys.executable).with_name("dbt"))]
    where = ["--project-dir", str(project.root), "--profiles-dir", str(project.root)]
    subprocess.run([*dbt, "seed", *where], check=True, capture_output=True)
    proc = subprocess.Popen(
        [*dbt, "run", "--vars", "{dbt_llm_dry_run: true}", *where], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert proc.stdout is not None
    output = []
    for line in proc.stdout:
        output.append(line.decode())
        if "START sql table model main.slow" in output[-1]:
            break
    time.sleep(0.5)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert project.query("select relation from dbt_llm.llm_dry_run_tables") == [('"warehouse"."main"."m"',)], output
    assert project.query("select count(*), count(l) from m") == [(5, 0)]  # what a real run must not build on

    project.dbt("run", "--select", "m")
    assert project.query("select count(*), count(l) from m") == [(5, 5)]
    assert project.query("select count(*) from dbt_llm.llm_dry_run_tables") == [(0,)]
