"""The macros on Apache Spark: `dbt-llm spark` runs real dbt-spark (`method: session`) on a local
Hive-enabled session in a child process, against the fake OpenAI server on 127.0.0.1. Each test starts
a JVM per dbt command (about 30 s each on 2 cores), so every test checks several things per run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

pytest.importorskip("pyspark", reason="pip install 'dbt-llm[spark]'")

sys.path.insert(0, str(Path(__file__).parent))
from conftest import API_KEY
from openai_server import FakeOpenAI, RecordedRequest
from spark_project import SparkProject, show_json

from dbt_llm.spark import worker as worker_module

pytestmark = [pytest.mark.dbt, pytest.mark.spark]

LABELS = ["billing", "bug", "other"]
TICKETS = """
select id, concat('ticket about ', case id % 3 when 0 then 'billing' when 1 then 'bug' else 'other' end,
                  ' number ', cast(id % {distinct} as string),
                  case when id < 5 and {edited} then ' (edited)' else '' end) as body
from range({rows}) t(id)
union all select {rows}, null union all select {rows} + 1, ' \t '
"""
ENRICHED = """
select id, body,
  {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'other']) }} as category,
  {{ dbt_llm.llm_extract('body', {'topic': 'string', 'number': 'integer'}) }} as fields
from {{ ref('tickets') }}
"""


GUARDS = """
models:
  - name: enriched
    data_tests:
      - dbt_llm.llm_cost_below: {max_usd: 0.01}
      - dbt_llm.llm_error_rate
    columns:
      - name: category
        data_tests:
          - dbt_llm.llm_label_valid: {labels: ['billing', 'bug', 'other']}
  - name: notes
    columns:
      - name: tags
        data_tests:
          - dbt_llm.llm_label_valid: {labels: ['billing', 'bug', 'other'], multi_label: true}
"""

# Runs beside `enriched` (dbt threads: 2), on texts of its own; incremental, so a failed row must keep
# the whole insert out (Spark has no rollback).
FLAGS = """
{{ config(materialized='incremental', tags=['nightly'], meta={'owner': 'risk@example.com', 'dbt_llm': {}}) }}
select id, {{ dbt_llm.llm_filter("concat('flag: ', body)", 'Is this about billing?') }} as is_billing
from {{ ref('tickets') }} where id < 30
{% if is_incremental() %} and id not in (select id from {{ this }}) {% endif %}
"""


# Free text and vectors, on one text so the window puts equal texts together for both.
NOTES = """
select id, body, {{ dbt_llm.llm_complete('body') }} as reply, {{ dbt_llm.llm_embed('body') }} as vector,
       {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'other'], multi_label=true) }} as tags
from {{ ref('tickets') }} where id < 12
"""


def _project(root: Path, server: FakeOpenAI, rows: int, distinct: int, **config: object) -> SparkProject:
    project = SparkProject(root, server.base_url, API_KEY, config=config)
    edited = "{{ var('edited', false) }}"
    project.write("models/tickets.sql", TICKETS.format(rows=rows, distinct=distinct, edited=edited))
    project.write("models/enriched.sql", ENRICHED)
    project.dbt("deps")
    return project


def _function(request: RecordedRequest) -> str:
    if request.schema is None:
        return "complete"  # free text: no response_format
    properties = request.schema.get("properties", {})
    if "labels" in properties:
        return "classify_multi"
    return "classify" if "label" in properties else "filter" if "answer" in properties else "extract"


def _by_function(requests: list[RecordedRequest]) -> Counter[str]:
    return Counter(_function(r) for r in requests)


def test_spark_calls_once_per_distinct_text_caches_and_audits(tmp_path: Path) -> None:
    with FakeOpenAI(api_key=API_KEY, hang_seconds=5.0) as server:
        project = _project(tmp_path / "project", server, rows=300, distinct=60)
        project.write("models/flags.sql", FLAGS)
        project.write("models/notes.sql", NOTES)
        failing = "flag: ticket about bug number 7"
        server.inject("invalid", times=4, match=failing)  # every attempt of one row (max_attempts: 4)

        # Cold: 300 rows of 60 distinct texts (plus a NULL and a blank) -> 60 requests per function;
        # `flags` fails on its one row with no valid answer, which is recorded and not cached, and writes nothing.
        failed_run = project.dbt("run", ok=False)
        assert failed_run.returncode == 1, failed_run.stdout[-4000:]
        assert "1 row(s) of model.spark_llm.flags got no valid answer" in failed_run.stdout
        sent = server.requests
        assert _by_function(sent) == {
            "classify": 60,
            "extract": 60,
            "filter": 30 + 3,
            "complete": 12,
            "classify_multi": 12,
        }
        assert [len(r.texts) for r in server.embedding_requests] == [12]
        assert not list((project.state / "warehouse" / "analytics.db").glob("flags/*.parquet")), "nothing committed"
        assert project.query("select node_id, error_kind, attempts from {dbt_llm.llm_errors}") == [
            ("model.spark_llm.flags", "invalid_answer", 4)
        ]
        assert project.query(
            "select status, rows, failed_rows, api_calls from {dbt_llm.llm_audit} where function = 'filter'"
        ) == [("failed_rows", 30, 1, 33)]
        # Attribution: meta.owner (no group), the tags, the meta without dbt-llm's key; none on `enriched`.
        assert project.query(
            "select distinct node_id, owner, group_name, tags, meta from {dbt_llm.llm_audit} "
            "where node_id like '%flags' or node_id like '%enriched' order by 1"
        ) == [
            ("model.spark_llm.enriched", None, None, [], "{}"),
            ("model.spark_llm.flags", "risk@example.com", None, ["nightly"], '{"owner": "risk@example.com"}'),
        ]
        rows = project.model_rows("enriched")
        assert len(rows) == 302
        for _, body, category, fields in rows:
            if body is None or not body.strip():
                assert (category, fields) == (None, None)  # no text: NULL, no call
            else:
                assert category == body.split()[2]  # the fake answers the label the text names
                assert fields is not None
        audit = project.query(
            "select function, rows, cache_hits, api_calls, failed_rows, prompt_tokens, completion_tokens, cost_usd, "
            "status from {dbt_llm.llm_audit} where node_id like '%enriched' order by function"
        )
        for function, rows_, hits, calls, failed, prompt, completion, cost, status in audit:
            mine = [r for r in sent if _function(r) == function]
            assert (rows_, hits, calls, failed, status) == (300, 240, 60, 0, "success")
            assert (prompt, completion) == (sum(r.prompt_tokens for r in mine), sum(r.completion_tokens for r in mine))
            assert cost == pytest.approx((prompt * 0.15 + completion * 0.60) / 1e6)
        assert project.query("select count(*), count(distinct key) from {dbt_llm.llm_cache}") == [(185, 185)]
        notes = project.model_rows("notes")
        assert [reply for _, _, reply, _, _ in notes] == [f"Reply to: {body}" for _, body, _, _, _ in notes]
        assert {len(vector) for _, _, _, vector, _ in notes} == {32}
        assert [list(tags) for _, body, _, _, tags in notes] == [[body.split()[2]] for _, body, _, _, _ in notes]
        assert project.query(
            "select function, api_calls, rows from {dbt_llm.llm_audit} "
            "where function in ('complete', 'embed') order by 1"
        ) == [("complete", 12, 12), ("embed", 1, 12)]
        assert not list((project.state / "staging" / "dbt_llm").glob("*/*")), "staging is merged and dropped"

        # Warm, with the package's tests on the model: nothing is sent; the audit of the new invocation says so.
        server.reset()
        project.write("models/schema.yml", GUARDS)
        built = project.dbt("build", "--select", "enriched", "notes")
        assert server.requests == []
        assert "PASS=6 WARN=0 ERROR=0" in built.stdout, built.stdout[-3000:]
        warm = project.query(
            "select function, rows, cache_hits, api_calls, status from {dbt_llm.llm_audit} where invocation_id not in "
            "(select invocation_id from {dbt_llm.llm_audit} where api_calls > 0) and node_id like '%enriched' "
            "order by 1"
        )
        assert warm == [("classify", 300, 300, 0, "success"), ("extract", 300, 300, 0, "success")]

        # 5 edited rows: 5 new texts -> 5 requests per function; `flags` also retries its failed row.
        project.dbt("run", "--vars", "{edited: true}")
        assert _by_function(server.requests) == {
            "classify": 5,
            "extract": 5,
            "filter": 6,
            "complete": 5,
            "classify_multi": 5,
        }
        assert [len(r.texts) for r in server.embedding_requests] == [5]
        edits = {f"ticket about {LABELS[i % 3]} number {i} (edited)" for i in range(5)}
        assert {r.text for r in server.requests if _function(r) == "classify"} == edits
        assert failing in {r.text for r in server.requests}
        assert sorted(project.model_rows("flags"))[7] == (7, False)

        # dbt show reads the model back through the same command.
        shown = show_json(
            project.dbt(
                "show", "--inline", "select category, count(*) as n from {{ ref('enriched') }} group by 1 order by 1",
                "--output", "json",
            )
        )  # fmt: skip
        assert {row["category"]: row["n"] for row in shown} == {None: 2, "billing": 100, "bug": 100, "other": 100}


def test_spark_kill_mid_run_rerun_pays_only_for_what_was_in_flight(tmp_path: Path) -> None:
    distinct, concurrency, partitions = 390, 4, 2  # distinct: a multiple of 3, so id % 3 repeats with it
    with FakeOpenAI(api_key=API_KEY, latency=0.15, hang_seconds=5.0) as server:
        project = _project(
            tmp_path / "project", server, rows=2 * distinct, distinct=distinct, max_concurrency=concurrency
        )
        project.dbt("run", "--select", "tickets")
        running = project.start("run", "--select", "enriched")
        deadline = time.monotonic() + 300
        while len(server.requests) < 150:
            assert running.poll() is None, running.stdout.read() if running.stdout else ""
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.2)
        os.killpg(running.pid, signal.SIGKILL)  # the driver, the JVM and its Python workers
        running.wait()
        time.sleep(1.0)  # requests in flight at the kill finish on the server's side
        before = len(server.requests)
        assert before < 2 * distinct, "the kill came too late to test anything"

        project.dbt("run", "--select", "enriched")
        after = len(server.requests) - before
        # Every answer the killed run received was kept: the rerun sends the rest, plus at most the
        # requests that were in flight (answered by the server, never received).
        assert 2 * distinct - before <= after <= 2 * distinct - before + concurrency * partitions * 2
        rows = project.model_rows("enriched")
        assert sum(category is not None for _, _, category, _ in rows) == 2 * distinct
        audit = project.query(
            "select status, sum(api_calls), sum(prompt_tokens) from {dbt_llm.llm_audit} group by status order by 1"
        )
        statuses = {status: (calls, prompt) for status, calls, prompt in audit}
        assert set(statuses) == {"interrupted", "success"}  # the killed run's answers are audited
        lost = before - statuses["interrupted"][0]  # answered by the server while the run died
        assert 0 <= lost <= concurrency * partitions * 2
        assert statuses["success"][0] == after
        received = sum(r.prompt_tokens for r in server.requests)
        assert received - lost * max(r.prompt_tokens for r in server.requests) <= sum(p for _, p in statuses.values())
        assert sum(p for _, p in statuses.values()) <= received


def test_spark_submit_owns_the_session_and_the_key_reaches_only_the_executors(tmp_path: Path) -> None:
    """Under spark-submit (the way to a cluster), dbt-llm joins the session the flags configure; the
    key is given to the executors (spark.executorEnv), not to the driver."""
    with FakeOpenAI(api_key=API_KEY, hang_seconds=5.0) as server:
        project = _project(tmp_path / "project", server, rows=90, distinct=30)
        project.write(
            "models/enriched.sql",
            "select id, {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'other']) }} as category "
            "from {{ ref('tickets') }}",
        )
        state = tmp_path / "cluster"
        confs = {
            "spark.dbt_llm.staging": f"{state}/staging",
            "spark.sql.warehouse.dir": f"{state}/warehouse",
            "spark.sql.catalogImplementation": "hive",
            "spark.driver.extraJavaOptions": f"-Dderby.system.home={state}",
            "spark.hadoop.javax.jdo.option.ConnectionURL": f"jdbc:derby:;databaseName={state}/metastore_db;create=true",
            "spark.executorEnv.DBT_LLM_TEST_KEY": API_KEY,
        }
        env = project.env()
        env.pop("DBT_LLM_TEST_KEY")
        env["PYSPARK_PYTHON"] = sys.executable
        submit = [str(Path(sys.executable).parent / "spark-submit"), "--master", "local[2]"]
        for key, value in confs.items():
            submit += ["--conf", f"{key}={value}"]
        main = Path(worker_module.__file__).with_name("__main__.py")
        args = ["run", "--project-dir", str(project.root), "--profiles-dir", str(project.root)]
        done = subprocess.run([*submit, str(main), *args], env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
        assert len(server.requests) == 30
        assert all(r.authorization == f"Bearer {API_KEY}" for r in server.requests)
        assert not (project.state).exists(), "spark-submit's warehouse is used, not a local one"
        assert list((state / "warehouse" / "dbt_llm.db" / "llm_cache").glob("*.parquet"))


def test_spark_refuses_a_golden_set_when_the_model_compiles(tmp_path: Path) -> None:
    with FakeOpenAI(api_key=API_KEY, hang_seconds=5.0) as server:
        project = SparkProject(tmp_path / "project", server.base_url, API_KEY)
        project.write("models/golden.sql", "select 'a bug' as input, 'bug' as expected")
        project.write(
            "models/m.sql",
            "select {{ dbt_llm.llm_classify('input', ['bug', 'other'], golden=ref('golden')) }} as l "
            "from {{ ref('golden') }}",
        )
        project.dbt("deps")
        done = project.dbt("run", ok=False)
        assert done.returncode == 1, done.stdout[-4000:]
        assert "llm_classify(input) in model.spark_llm.m: golden sets are not available on spark yet" in done.stdout
        assert server.requests == []


def test_spark_refuses_a_cascade_when_the_model_compiles(tmp_path: Path) -> None:
    with FakeOpenAI(api_key=API_KEY, hang_seconds=5.0) as server:
        project = SparkProject(tmp_path / "project", server.base_url, API_KEY)
        project.write("models/t.sql", "select 'a bug' as body")
        project.write(
            "models/m.sql",
            "select {{ dbt_llm.llm_classify('body', ['bug', 'other'], escalate_to='gpt-4o', escalate_below=0.8) }} "
            "as l from {{ ref('t') }}",
        )
        project.dbt("deps")
        done = project.dbt("run", ok=False)  # refused when dbt parses the model, before any query
        assert done.returncode != 0, done.stdout[-4000:]
        assert "llm_classify: escalate_to (a cascade) is not supported on Spark yet" in done.stdout
        assert server.requests == []


def test_spark_refuses_llm_agg_when_the_model_compiles(tmp_path: Path) -> None:
    with FakeOpenAI(api_key=API_KEY, hang_seconds=5.0) as server:
        project = SparkProject(tmp_path / "project", server.base_url, API_KEY)
        project.write("models/t.sql", "select 'a' as g, 'a bug' as body")
        project.write(
            "models/m.sql",
            "select g, {{ dbt_llm.llm_agg('body', 'What goes wrong?') }} as v from {{ ref('t') }} group by g",
        )
        project.dbt("deps")
        done = project.dbt("run", ok=False)  # refused when dbt parses the model, before any query
        assert done.returncode != 0, done.stdout[-4000:]
        assert "llm_agg(body): llm_agg is not supported on Spark yet" in done.stdout
        assert server.requests == []
