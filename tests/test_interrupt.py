"""Ctrl-C and SIGTERM stop the spending: no request after the signal but those in flight, a clean
exit with dbt's code, the run's audit rows `cancelled` with what was paid, the rerun pays the rest."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DbtProject

LABELS = "['billing', 'bug', 'feature', 'other']"
CRASH_CODES = {134, 139}  # SIGABRT, SIGSEGV as the shell reports them (a negative code: killed by a signal)


def write_model(project: DbtProject, n: int) -> None:
    rows = ["id,body"] + [f"{i},ticket {i} about something" for i in range(n)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.write(
        "models/m.sql", f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"
    )
    project.write_profiles()


def dbt_child(project: DbtProject, *args: str) -> subprocess.Popen[bytes]:
    """dbt in a process group of its own, as a terminal's Ctrl-C reaches it."""
    dbt = str(Path(sys.executable).with_name("dbt"))
    where = ["--project-dir", str(project.root), "--profiles-dir", str(project.root)]
    return subprocess.Popen(
        [dbt, *args, *where], stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True
    )


def seed(project: DbtProject) -> None:
    proc = dbt_child(project, "seed")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, (out + err).decode()


def wait_for_answers(project: DbtProject, proc: subprocess.Popen[bytes], n: int) -> None:
    deadline = time.monotonic() + 90
    while len(project.server.answered()) < n:
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended or stalled before the signal"
        time.sleep(0.02)


def interrupt(proc: subprocess.Popen[bytes], sig: signal.Signals) -> tuple[int, str, float]:
    """Send `sig` to the process group; returns the exit code, all output and the seconds it took to exit."""
    sent = time.monotonic()
    os.killpg(proc.pid, sig)
    try:
        out, err = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"dbt did not exit within 30 s of {sig.name}:\n{(out + err).decode()[-3000:]}")
    return proc.returncode, (out + err).decode(), time.monotonic() - sent


def assert_clean_exit(code: int, output: str) -> None:
    assert code not in CRASH_CODES and code > 0, f"exit code {code}:\n{output[-3000:]}"
    assert code == 2, f"exit code {code}, not dbt's for an interrupted run:\n{output[-3000:]}"
    assert "Traceback" not in output and "terminate called" not in output, output[-3000:]


def audit(project: DbtProject) -> list[tuple[object, ...]]:
    return project.query("select status, api_calls, prompt_tokens, completion_tokens, cost_usd from dbt_llm.llm_audit")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_the_spending_and_settles_the_audit(project: DbtProject, sig: signal.Signals) -> None:
    n = 300
    project.plugin_config["max_concurrency"] = 4
    project.server.latency = 0.2
    write_model(project, n)
    seed(project)
    proc = dbt_child(project, "run")
    wait_for_answers(project, proc, 40)
    sent = time.monotonic()
    code, output, _took = interrupt(proc, sig)
    assert_clean_exit(code, output)
    late = [t for t in project.server.arrivals if t > sent + 5]
    assert not late, f"{len(late)} request(s) sent more than 5 s after {sig.name}"
    time.sleep(0.5)  # the server finishes answering what was in flight
    answered = project.server.answered()
    assert len(answered) < n

    # The audit says cancelled, with exactly what the server answered and billed.
    ((status, calls, prompt, completion, cost),) = audit(project)
    assert status == "cancelled"
    assert calls == len(project.server.requests)
    assert (prompt, completion) == (sum(r.prompt_tokens for r in answered), sum(r.completion_tokens for r in answered))
    assert cost == pytest.approx((prompt * 0.15 + completion * 0.60) / 1e6)
    assert project.query("select count(*) from dbt_llm.llm_cache")[0][0] == len(answered)
    assert project.query("select count(*) from dbt_llm.llm_errors")[0][0] == 0  # a cancelled row is no failure

    # The rerun pays only for the rest.
    paid = {r.text for r in answered}
    project.server.reset()
    project.dbt("run")
    assert project.query("select count(*), count(l) from m")[0] == (n, n)
    assert len(project.server.requests) == n - len(paid)
    assert not paid & {r.text for r in project.server.requests}


def test_ctrl_c_while_every_request_hangs_exits_promptly(project: DbtProject) -> None:
    n = 40
    project.plugin_config["request_timeout"] = 60.0
    project.server.hang_seconds = 120.0
    project.server.inject("timeout", times=10_000)  # every request: accepted, never answered
    write_model(project, n)
    seed(project)
    proc = dbt_child(project, "run")
    deadline = time.monotonic() + 60
    while len(project.server.arrivals) < 4:
        assert proc.poll() is None and time.monotonic() < deadline, "no request reached the server"
        time.sleep(0.02)
    time.sleep(1.0)
    code, output, took = interrupt(proc, signal.SIGINT)
    assert_clean_exit(code, output)
    assert took < 20, f"took {took:.1f} s to exit"
    ((status, _calls, _prompt, _completion, cost),) = audit(project)
    assert (status, cost) == ("cancelled", 0.0)
    assert project.query("select count(*) from dbt_llm.llm_errors")[0][0] == 0


def test_four_dry_runs_of_a_microbatch_dag_each_exit_0(project: DbtProject) -> None:
    """The report: 1 of 4 identical dry runs of a DAG with a microbatch model exited 134 (SIGABRT)."""
    rows = ["id,created_at,body"] + [
        f"{d}{i},2024-01-0{d} 0{i}:00:00,day {d} ticket {i}" for d in (1, 2) for i in range(5)
    ]
    project.write("seeds/events.csv", "\n".join(rows) + "\n")
    project.write(
        "seeds/events.yml",
        "version: 2\nseeds:\n  - name: events\n    config:\n      event_time: created_at\n"
        "      column_types: {created_at: timestamp}\n",
    )
    project.write(
        "models/mb.sql",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='created_at', "
        "batch_size='day', begin='2024-01-01') }}\n"
        f"select id, created_at, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('events') }}}}\n",
    )
    project.write(
        "models/down.sql", "select id, {{ dbt_llm.llm_filter('l', 'Is it a bug?') }} as b from {{ ref('mb') }}\n"
    )
    project.write_profiles()
    seed(project)
    window = ["--event-time-start", "2024-01-01", "--event-time-end", "2024-01-03"]
    for _ in range(4):
        proc = dbt_child(project, "build", *window, "--vars", "{dbt_llm_dry_run: true}")
        out, err = proc.communicate(timeout=180)
        output = (out + err).decode()
        assert proc.returncode == 0, f"exit code {proc.returncode}:\n{output[-3000:]}"
        assert "Traceback" not in output and "terminate called" not in output, output[-3000:]
        assert "Dry run so far: 10 request(s)" in output, output[-3000:]
    assert project.server.requests == []


def test_fail_fast_stops_the_spending_of_the_models_still_running(project: DbtProject) -> None:
    """dbt --fail-fast cancels the running nodes when one fails: their LLM calls stop sending too."""
    project.plugin_config["max_concurrency"] = 2
    project.server.latency = 0.2  # 300 rows at 2 in flight: 30 s if nothing stopped them
    write_model(project, 300)
    # Fails after a second or two of work, while m is sending.
    project.write(
        "models/boom.sql", "select case when sum(range) > 0 then error('boom') end as x from range(300000000)\n"
    )
    project.dbt("seed")
    started = time.monotonic()
    result = project.dbt("run", "--fail-fast", ok=False)
    took = time.monotonic() - started
    sent = len(project.server.requests)
    assert not result.success
    assert 0 < sent < 150 and took < 20, (sent, took)  # m had started, and stopped well before its 300
    status = project.query("select status from dbt_llm.llm_audit where node_id like '%.m'")
    assert status == [("cancelled",)]
    project.server.reset()
    project.server.latency = 0.0
    project.dbt("run", "--select", "m")
    # Paid again at most what was on the wire when it was cancelled (2 slots).
    assert 300 - sent <= len(project.server.requests) <= 300 - sent + 2
