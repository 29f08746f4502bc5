"""The nightly path on Spark (`dbt-llm spark`, a local session, the fake OpenAI server on 127.0.0.1):
batch mode through the Batch API, a run killed while it waits, dry runs and `max_cost_usd` across the
Python workers. Each dbt command starts a JVM (about 30 s on 2 cores): each test checks several things."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import duckdb
import pytest

pytest.importorskip("pyspark", reason="pip install 'dbt-llm[spark]'")

sys.path.insert(0, str(Path(__file__).parent))
from conftest import API_KEY
from openai_server import FakeOpenAI
from spark_project import SparkProject

pytestmark = [pytest.mark.dbt, pytest.mark.spark]

TICKETS = """
select id, concat('ticket about ', case id % 3 when 0 then 'billing' when 1 then 'bug' else 'other' end,
                  ' number ', cast(id % {distinct} as string)) as body
from range({rows}) t(id)
"""
ENRICHED = """
select id, body, {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'other']) }} as category
from {{ ref('tickets') }} __WHERE__
"""
BATCH = ("--vars", "{dbt_llm_mode: batch}")
PRICE = {"input": 0.15, "output": 0.60}


def _project(root: Path, server: FakeOpenAI, rows: int, distinct: int, **config: object) -> SparkProject:
    project = SparkProject(root, server.base_url, API_KEY, config={"batch_poll_interval": 0.05, **config})
    project.write("models/tickets.sql", TICKETS.format(rows=rows, distinct=distinct))
    project.write("models/enriched.sql", ENRICHED.replace("__WHERE__", ""))
    project.dbt("deps")
    return project


def _jobs_recorded(project: SparkProject) -> int:
    files = project.state / "warehouse" / "dbt_llm.db" / "llm_batch_jobs"
    if not list(files.glob("*.parquet")):
        return 0
    with duckdb.connect() as con:
        return int(con.execute(f"select count(*) from read_parquet('{files}/*.parquet')").fetchone()[0])  # type: ignore[index]


def test_spark_batch_mode_half_price_and_a_run_killed_while_it_waits_is_collected_by_the_next(
    tmp_path: Path,
) -> None:
    distinct = 42  # a multiple of 3: id % 3 repeats with it
    with FakeOpenAI(api_key=API_KEY) as server:
        project = _project(tmp_path / "project", server, rows=3 * distinct, distinct=distinct)
        server.batch_delay, server.batch_window = 1e6, 1e7  # the job runs until the clock moves on
        running = project.start("run", *BATCH)
        deadline = time.monotonic() + 400
        while _jobs_recorded(project) == 0:  # the job is in the Spark table before the run waits
            assert running.poll() is None, running.stdout.read() if running.stdout else ""
            assert time.monotonic() < deadline, "no job was recorded"
            time.sleep(0.5)
        os.killpg(running.pid, signal.SIGKILL)  # the driver, the JVM and its Python workers
        running.wait()
        assert len(server.batches) == 1 and server.requests == []
        job = server.batches[0]
        assert len(set(job.custom_ids)) == distinct  # each distinct text once, in one job

        server.clock = lambda: time.time() + 2e6  # the job has ended
        done = project.dbt("run", *BATCH)
        assert len(server.batches) == 1, "the rerun created a job"  # it collected the killed run's
        assert server.requests == [], "nothing realtime"
        assert "0 batch job(s) sent" in done.stdout and f"{distinct} text(s) in jobs an earlier run left" in done.stdout
        rows = project.model_rows("enriched")
        assert len(rows) == 3 * distinct and all(category == body.split()[2] for _, body, category in rows)
        billed = server.batch_requests
        assert len(billed) == distinct
        ((calls, answers, hits, prompt, completion, cost),) = project.query(
            "select api_calls, batch_answers, cache_hits, prompt_tokens, completion_tokens, cost_usd "
            "from {dbt_llm.llm_audit} where status = 'success'"
        )
        assert (calls, answers, hits) == (distinct, distinct, 2 * distinct)
        assert (prompt, completion) == (sum(r.prompt_tokens for r in billed), sum(r.completion_tokens for r in billed))
        assert cost == pytest.approx((prompt * PRICE["input"] + completion * PRICE["output"]) / 2 / 1e6)  # half price
        jobs = project.query(
            "select job_id, requests, status, collected_at is not null from {dbt_llm.llm_batch_jobs} order by 4"
        )
        assert jobs == [(job.id, distinct, "validating", False), (job.id, distinct, "completed", True)]
        assert project.query("select count(distinct key) from {dbt_llm.llm_batch_job_keys}") == [(distinct,)]

        project.dbt("run", *BATCH)  # everything cached: no job, no request
        assert len(server.batches) == 1 and server.requests == []


def test_spark_dry_run_sends_nothing_and_estimates_every_uncached_row(tmp_path: Path) -> None:
    distinct = 60
    with FakeOpenAI(api_key=API_KEY) as server:
        project = _project(tmp_path / "project", server, rows=3 * distinct, distinct=distinct)
        project.write("models/warm.sql", ENRICHED.replace("__WHERE__", "where id % 60 < 20"))  # caches 20 texts
        project.dbt("run", "--select", "tickets", "warm")
        assert len(server.requests) == 20
        prompt_per_request = {r.prompt_tokens for r in server.requests}

        done = project.dbt("run", "--select", "enriched", "--vars", "{dbt_llm_dry_run: true}")
        assert len(server.requests) == 20 and server.batches == [], "a dry run sends nothing"
        ((status, rows, hits, calls, requests, prompt, completion, cost),) = project.query(
            "select status, rows, cache_hits, api_calls, est_requests, est_prompt_tokens, est_completion_tokens, "
            "est_cost_usd from {dbt_llm.llm_audit} where node_id like '%enriched'"
        )
        assert (status, rows, calls) == ("dry_run", 3 * distinct, 0)
        assert hits == 3 * 20  # the rows of the cached texts
        assert requests == distinct - 20  # every uncached text, once
        # ~4 characters a token: within a few tokens a request of what the server counted
        assert min(prompt_per_request) * requests * 0.8 <= prompt <= max(prompt_per_request) * requests * 1.3
        assert completion > 0 and cost == pytest.approx((prompt * 0.15 + completion * 0.60) / 1e6)
        assert f"dry run: model.spark_llm.enriched: llm_classify (gpt-4o-mini): {requests} request(s)" in done.stdout
        rows_built = project.model_rows("enriched")
        answered = [(body, category) for _, body, category in rows_built if category is not None]
        assert len(rows_built) == 3 * distinct and len(answered) == 3 * 20  # NULL where a call would be needed
        assert all(category == body.split()[2] for body, category in answered)

        batch = project.dbt("run", "--select", "enriched", "--vars", "{dbt_llm_dry_run: true, dbt_llm_mode: batch}")
        assert len(server.requests) == 20 and server.batches == []
        assert f"{requests} request(s)" in batch.stdout
        estimates = project.query(
            "select est_cost_usd from {dbt_llm.llm_audit} where status = 'dry_run' order by started_at"
        )
        assert estimates[1][0] == pytest.approx(estimates[0][0] / 2)  # batch mode priced at the batch price


def test_spark_a_budget_stops_a_400_row_model_near_the_cap_and_keeps_what_was_paid(tmp_path: Path) -> None:
    cap, price = 0.01, {"input": 3.0, "output": 12.0}
    with FakeOpenAI(api_key=API_KEY, latency=0.05) as server:
        project = _project(
            tmp_path / "project", server, rows=400, distinct=400, max_cost_usd=cap, prices={"gpt-4o-mini": price}
        )
        project.write("models/tickets.sql", "select id, concat('ticket number ', cast(id as string)) as body "
                      "from range(400) t(id)")  # fmt: skip
        done = project.dbt("run", ok=False)
        assert done.returncode == 1
        assert "budget reached in model.spark_llm.enriched: this invocation spent $" in done.stdout
        billed = server.requests
        paid = [(r.prompt_tokens * price["input"] + r.completion_tokens * price["output"]) / 1e6 for r in billed]
        slots = 2 * 4  # local[2] task slots x max_concurrency
        assert 0 < len(billed) < 400
        assert cap - slots * max(paid) <= sum(paid) <= cap + max(paid)  # stops within about a request a slot
        ((status, calls, skipped, cost),) = project.query(
            "select status, api_calls, skipped_rows, cost_usd from {dbt_llm.llm_audit}"
        )
        assert (status, calls) == ("budget_exceeded", len(billed))
        assert skipped == 400 - len(server.answered()) and cost == pytest.approx(sum(paid))
        assert project.query("select count(*) from {dbt_llm.llm_cache}") == [(len(server.answered()),)]  # paid: kept
        assert project.query("select count(*) from {dbt_llm.llm_errors}") == [(0,)]  # `budget` is no row failure
