"""Correct in the dbt commands a team uses: microbatch and `dbt retry`, `dbt show`, model-level
settings, texts shared by models, and the shipped tests judging the right run."""

from __future__ import annotations

import datetime as dt
import itertools

import pytest
from conftest import DbtProject

LABELS = "['billing', 'bug', 'feature']"


def tickets(project: DbtProject, n: int, prefix: str = "ticket") -> None:
    rows = ["id,body"] + [f"{i},{prefix} {i}: my invoice is wrong" for i in range(n)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")


def classify_model(name: str = "m", config: str = "") -> str:
    return f"{config}select id, body, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"


MICROBATCH = """{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='created_at',
                 batch_size='day', begin='2024-01-01') }}
select id, created_at, {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'feature']) }} as l from {{ ref('events') }}
"""


def microbatch_events(project: DbtProject) -> list[str]:
    """Five tickets a day on three days, and a microbatch model over them; returns the dbt window flags."""
    rows = ["id,created_at,body"] + [
        f"{day * 10 + i},2024-01-0{day} 0{i}:00:00,day {day} ticket {i}: my invoice is wrong"
        for day in (1, 2, 3)
        for i in range(5)
    ]
    project.write("seeds/events.csv", "\n".join(rows) + "\n")
    project.write(
        "seeds/events.yml",
        "version: 2\nseeds:\n  - name: events\n    config:\n      event_time: created_at\n"
        "      column_types: {created_at: timestamp}\n",
    )
    project.write("models/mb.sql", MICROBATCH)
    project.dbt("seed")
    return ["--event-time-start", "2024-01-01", "--event-time-end", "2024-01-04"]


def test_microbatch_fails_the_batch_that_holds_the_failed_row_and_retry_mends_it(project: DbtProject) -> None:
    project.plugin_config["max_attempts"] = 2
    window = microbatch_events(project)
    project.server.inject("invalid", times=100, match="day 2 ticket 3:")
    result = project.dbt("run", "--select", "mb", *window, ok=False)

    run = result.result.results[0]
    failed = [start.replace(tzinfo=None) for start, _ in run.batch_results.failed]
    assert failed == [dt.datetime(2024, 1, 2)], run.batch_results
    assert len(run.batch_results.successful) == 2
    # The failed batch wrote nothing, so no NULL was committed; the other days are in.
    assert project.query("select count(*), count(l), count(*) filter (where day(created_at) = 2) from mb")[0] == (
        10,
        10,
        0,
    )
    audit = project.query("select batch_id, command, status, rows, failed_rows from dbt_llm.llm_audit order by 1")
    assert [a[:3] for a in audit] == [
        ("20240101", "run", "success"),
        ("20240102", "run", "failed_rows"),
        ("20240103", "run", "success"),
    ]
    assert audit[1][4] == 1
    assert project.query("select input_preview from dbt_llm.llm_errors") == [("day 2 ticket 3: my invoice is wrong",)]

    project.server.reset()
    project.dbt("retry")
    assert [r.text for r in project.server.requests] == ["day 2 ticket 3: my invoice is wrong"]
    assert project.query("select count(*), count(l) from mb")[0] == (15, 15)
    newest = "select batch_id, status from dbt_llm.llm_audit order by started_at desc limit 1"
    assert project.query(newest) == [("20240102", "success")]


def test_a_dry_run_prices_every_microbatch_batch_writes_none_and_fails_nothing(project: DbtProject) -> None:
    window = microbatch_events(project)
    project.write(  # downstream of mb: estimated on mb's rows
        "models/down.sql",
        "select id, {{ dbt_llm.llm_filter('l', 'Is it about money?') }} as money from {{ ref('mb') }}\n",
    )
    dry = ["--vars", "{dbt_llm_dry_run: true}"]
    log = project.root / "logs" / "dbt.log"

    # No table yet: every batch is priced, none is written, and the table the first batch created is dropped.
    project.dbt("run", "--select", "mb", *window, *dry)
    assert project.server.requests == []
    audit = project.query("select batch_id, status, est_requests from dbt_llm.llm_audit order by 1")
    assert audit == [(f"2024010{d}", "dry_run", 5) for d in (1, 2, 3)]
    assert project.query("select count(*) from information_schema.tables where table_name = 'mb'")[0][0] == 0
    assert "Dry run so far: 15 request(s)" in log.read_text()

    project.dbt("run", *window)
    assert project.query("select count(*), count(l) from mb")[0] == (15, 15)
    before = project.query("select * from mb order by id")
    project.execute("delete from dbt_llm.llm_cache where function = 'classify'")
    project.server.reset()
    # Dry runs of the DAG over a table that exists (one a full refresh, which would replace it): each
    # exits 0, sends nothing, prices the same batches and leaves mb as it was.
    for refresh in ([], ["--full-refresh"]):
        size = len(log.read_text())
        result = project.dbt("run", *window, *dry, *refresh)
        assert {r.status for r in result.result.results} == {"success"}
        assert project.server.requests == []
        assert project.query("select * from mb order by id") == before
        said = log.read_text()[size:]
        assert "each of its 3 batch(es) was priced and none written" in said
        assert "Dry run so far: 15 request(s)" in said, said
    newest = project.query(
        "select batch_id, est_requests from dbt_llm.llm_audit where invocation_id = (select invocation_id from "
        "dbt_llm.llm_audit order by started_at desc limit 1) and node_id like '%.mb' order by 1"
    )
    assert newest == [(f"2024010{d}", 5) for d in (1, 2, 3)]
    # The next real run writes every batch again (the dry run's settings were only the dry run's).
    project.dbt("run", "--select", "mb", *window)
    assert len(project.server.requests) == 15
    assert project.query("select * from mb order by id") == before


def test_show_settles_its_audit_row_and_the_tests_judge_the_last_run_not_the_preview(project: DbtProject) -> None:
    project.plugin_config.update(max_attempts=1, on_error="null")
    tickets(project, 20)
    project.write("models/m.sql", classify_model())
    project.write(
        "models/schema.yml",
        """
version: 2
models:
  - name: m
    data_tests:
      - dbt_llm.llm_cost_below: {arguments: {max_usd: 0.0001}, config: {alias: cost_of_run}}
      - dbt_llm.llm_error_rate: {arguments: {max_rate: 0.0}, config: {alias: errors_of_run}}
""",
    )
    project.dbt("seed")
    project.dbt("run")
    run_cost = project.query("select cost_usd from dbt_llm.llm_audit")[0][0]
    assert 0.0001 < run_cost < 0.001  # the run costs more than the test allows

    tickets(project, 20, prefix="new ticket")  # new texts: the preview pays for the rows it shows
    project.dbt("seed")
    project.server.reset()
    project.server.inject("invalid", times=1, match="new ticket 2:")
    project.dbt("show", "--select", "m", "--limit", "5")
    assert 0 < len(project.server.requests) <= 6
    preview = project.query("select command, status, failed_rows from dbt_llm.llm_audit where command = 'show'")
    assert preview == [("show", "preview", 1)]
    assert project.query("select count(*) from dbt_llm.llm_audit where status = 'running'")[0][0] == 0

    result = project.dbt("test", ok=False)
    outcome = {r.node.alias: r.status for r in result.result.results}
    # Judged on the run: too costly, no errors. The preview (cheap, one failed row) is not the last run.
    assert outcome == {"cost_of_run": "fail", "errors_of_run": "pass"}


def test_tests_find_their_model_by_unique_id_not_by_a_like_pattern(project: DbtProject) -> None:
    tickets(project, 10)
    project.write("models/m_1.sql", classify_model())
    # `_` is a LIKE wildcard: 'mx1' matched '%.m_1'. Its texts differ, so it pays on its own.
    project.write(
        "models/mx1.sql",
        f"select id, {{{{ dbt_llm.llm_classify('body || body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    costs = dict(project.query("select node_id, cost_usd from dbt_llm.llm_audit"))
    own = costs["model.dbt_llm_example.m_1"]
    limit = (own + costs["model.dbt_llm_example.mx1"] + own) / 2  # above m_1 alone, below the two together
    project.write(
        "models/schema.yml",
        f"version: 2\nmodels:\n  - name: m_1\n    data_tests:\n"
        f"      - dbt_llm.llm_cost_below: {{arguments: {{max_usd: {limit:.8f}}}}}\n",
    )
    project.dbt("test")


def test_a_failed_text_shared_by_two_models_is_recorded_for_both(project: DbtProject) -> None:
    project.plugin_config.update(max_attempts=1, on_error="null", max_concurrency=1)
    project.server.latency = 1.0  # both models wait on the one request for ticket 3, however the threads start
    tickets(project, 6)
    project.write("models/a.sql", classify_model())
    project.write("models/b.sql", classify_model())
    project.dbt("seed")
    project.server.inject("invalid", times=1, match="ticket 3:")
    project.dbt("run")
    assert len([r for r in project.server.requests if "ticket 3:" in r.text]) == 1
    errors = project.query("select node_id, error_kind from dbt_llm.llm_errors order by 1")
    assert errors == [("model.dbt_llm_example.a", "invalid_answer"), ("model.dbt_llm_example.b", "invalid_answer")]
    assert project.query("select count(*) from a where l is null")[0][0] == 1
    assert project.query("select count(*) from b where l is null")[0][0] == 1


def test_a_model_sets_on_error_and_its_model_in_meta(project: DbtProject) -> None:
    project.plugin_config.update(max_attempts=1, on_error="fail")
    tickets(project, 6)
    project.write(
        "models/keeps_nulls.sql", classify_model(config="{{ config(meta={'dbt_llm': {'on_error': none}}) }}\n")
    )
    project.write("models/fails.sql", classify_model())
    project.write(
        "models/other_model.sql",
        "{{ config(meta={'dbt_llm': {'model': 'gpt-4o'}}) }}\n"
        f"select id, {{{{ dbt_llm.llm_classify('upper(body)', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n",
    )
    project.dbt("seed")
    project.server.inject("invalid", times=2, match="ticket 3:")
    result = project.dbt("run", ok=False)
    status = {r.node.name: str(r.status) for r in result.result.results}
    assert status == {"keeps_nulls": "success", "fails": "error", "other_model": "success"}
    assert {r.model for r in project.server.requests if r.text.isupper()} == {"gpt-4o"}
    assert {r.model for r in project.server.requests if not r.text.isupper()} == {"gpt-4o-mini"}


def test_unknown_model_setting_fails_at_compile_time(project: DbtProject) -> None:
    tickets(project, 1)
    project.write("models/m.sql", classify_model(config="{{ config(meta={'dbt_llm': {'on_eror': 'null'}}) }}\n"))
    project.dbt("seed")
    result = project.dbt("compile", "--select", "m", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert "unknown key(s) ['on_eror']" in message and "on_error" in message


@pytest.mark.parametrize(
    ("text", "got"),
    [("body", "an undefined Jinja name"), ("''", "an empty string"), ("5", "got 5")],
)
def test_text_that_is_not_a_quoted_sql_expression_fails_at_compile_time(
    project: DbtProject, text: str, got: str
) -> None:
    tickets(project, 1)
    project.dbt("seed")
    project.write(
        "models/m.sql", f"select {{{{ dbt_llm.llm_classify({text}, {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"
    )
    result = project.dbt("compile", "--select", "m", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert "llm_classify: `text` must be a SQL expression written as a quoted string" in message, message
    assert got in message and "put the column name in quotes" in message
    assert project.server.requests == []


def test_a_dry_run_estimates_a_whole_dag_and_commits_no_null_to_an_incremental_model(project: DbtProject) -> None:
    tickets(project, 20)
    project.write("models/a.sql", classify_model())
    project.write(  # downstream of a: estimated on a's rows, built from cache with NULLs
        "models/c.sql",
        f"select id, {{{{ dbt_llm.llm_classify('upper(body)', {LABELS}) }}}} as l2 from {{{{ ref('a') }}}}\n",
    )
    project.write(
        "models/b.sql",
        "{{ config(materialized='incremental', unique_key='id') }}\n"
        "select id, {{ dbt_llm.llm_extract('body', {'amount': 'number'}) }} as e from {{ ref('t') }}\n",
    )
    # downstream of b, which does not exist yet: the dry run keeps b for it until the command ends
    project.write("models/d.sql", "select count(*) as n, count(e) as answered from {{ ref('b') }}\n")
    project.dbt("seed")
    project.dbt("run", "--vars", "{dbt_llm_dry_run: true}")
    assert project.server.requests == []
    estimates = project.query("select node_id, status, est_requests from dbt_llm.llm_audit order by 1")
    assert estimates == [
        ("model.dbt_llm_example.a", "dry_run", 20),
        ("model.dbt_llm_example.b", "dry_run", 20),
        ("model.dbt_llm_example.c", "dry_run", 20),
    ]
    assert project.query("select count(*), count(l2) from c")[0] == (20, 0)
    assert project.query("select n, answered from d") == [(20, 0)]
    # The incremental model's table was dropped when the command ended: no NULL is left for a later run to keep.
    tables = {t for (t,) in project.query("select table_name from information_schema.tables")}
    assert {"a", "c", "d"} <= tables and "b" not in tables
    assert project.query("select count(*) from dbt_llm.llm_dry_run_tables") == [(0,)]

    project.dbt("run")
    assert len(project.server.requests) == 60
    assert project.query("select count(e) from b")[0][0] == 20
    assert project.query("select count(l2) from c")[0][0] == 20


def test_a_cap_on_a_model_without_a_price_fails_at_compile_time(project: DbtProject) -> None:
    project.plugin_config["max_cost_usd"] = 1.0
    tickets(project, 3)
    project.dbt("seed")
    project.write("models/m.sql", classify_model(config="{{ config(meta={'dbt_llm': {'model': 'my-own-model'}}) }}\n"))
    result = project.dbt("compile", "--select", "m", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert "no price is known for model 'my-own-model'" in message and "prices: {my-own-model:" in message
    assert project.server.requests == []


def test_a_model_cap_stops_that_model_only(project: DbtProject) -> None:
    tickets(project, 20)
    # Each call here costs about $0.00001: the cap allows a handful of this model's rows.
    project.write(
        "models/capped.sql", classify_model(config="{{ config(meta={'dbt_llm': {'max_cost_usd': 0.00005}}) }}\n")
    )
    project.write(
        "models/free.sql",
        f"select id, {{{{ dbt_llm.llm_classify('upper(body)', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n",
    )
    project.dbt("seed")
    result = project.dbt("run", ok=False)
    status = {r.node.name: (str(r.status), str(r.message)) for r in result.result.results}
    assert status["free"][0] == "success"
    assert status["capped"][0] == "error" and "this model (meta dbt_llm.max_cost_usd) spent $" in status["capped"][1]
    spent = project.query("select cost_usd from dbt_llm.llm_audit where node_id like '%capped'")[0][0]
    assert 0.00003 < spent <= 0.00005 * 1.2  # stops at the model's cap, within the estimate's error
    assert project.query("select count(l) from free")[0][0] == 20


def test_a_run_after_a_preview_records_every_request_it_pays_for(project: DbtProject) -> None:
    # A preview's query stops after its first 2,048-row chunk; the rest of its prefetch was queued, not sent.
    project.plugin_config["max_concurrency"] = 16
    tickets(project, 3000)
    project.write("models/m.sql", classify_model())
    project.dbt("seed")
    project.dbt("show", "--select", "m", "--limit", "5")
    previewed = {r.text for r in project.server.requests}
    assert 0 < len(previewed) < 3000
    project.server.reset()
    project.dbt("run")
    asked = {r.text for r in project.server.requests}
    assert len(asked) == 3000 - len(previewed) and not asked & previewed  # nothing paid twice
    run = "select sum(api_calls), sum(retries), sum(cache_hits) from dbt_llm.llm_audit where command = 'run'"
    calls, retries, hits = project.query(run)[0]
    assert (calls - retries, hits) == (len(asked), len(previewed))  # a first request per text, in the audit
    # Every request the server got is in the audit; an attempt a loaded machine timed out before the
    # server read it counts there too (a provider may have billed it).
    assert len(project.server.requests) <= calls


def test_a_snapshot_is_settled_by_its_post_hook_and_judged_by_the_tests(project: DbtProject) -> None:
    """`dbt snapshot` runs the post-hook as `dbt run` does: its audit row is settled, not a preview, and
    llm_cost_below judges it (the macro _llm_hooked_commands is the one list both sides read)."""
    tickets(project, 20)
    project.write(
        "snapshots/snap.sql",
        "{% snapshot snap %}\n{{ config(unique_key='id', strategy='check', check_cols='all') }}\n"
        + classify_model()
        + "{% endsnapshot %}\n",
    )
    project.write(
        "snapshots/schema.yml",
        """
version: 2
snapshots:
  - name: snap
    data_tests:
      - dbt_llm.llm_cost_below: {arguments: {max_usd: 0.0001}, config: {alias: cost_of_snapshot}}
      - dbt_llm.llm_error_rate: {arguments: {max_rate: 0.0}, config: {alias: errors_of_snapshot}}
""",
    )
    project.dbt("seed")
    project.dbt("snapshot")
    assert len(project.server.requests) == 20
    audit = project.query("select command, status, rows, cost_usd from dbt_llm.llm_audit")
    assert [a[:3] for a in audit] == [("snapshot", "success", 20)]
    assert 0.0001 < audit[0][3] < 0.001  # more than the test allows
    result = project.dbt("test", "--select", "snap", ok=False)
    outcome = {r.node.alias: r.status for r in result.result.results}
    assert outcome == {"cost_of_snapshot": "fail", "errors_of_snapshot": "pass"}


def test_show_inline_answers_a_preview_with_its_limit_and_a_view_model_still_fails(project: DbtProject) -> None:
    # dbt's default materialization, view, is what an inline query gets too.
    project.write(
        "dbt_project.yml", "name: dbt_llm_example\nversion: '1.0.0'\nconfig-version: 2\nprofile: dbt_llm_example\n"
    )
    tickets(project, 20)
    project.dbt("seed")
    inline = f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}"
    result = project.dbt("show", "--inline", inline, "--limit", "3")
    table = result.result.results[0].agate_table
    assert len(table.rows) == 3 and all(row["l"] in ("billing", "bug", "feature") for row in table.rows)
    assert 3 <= len(project.server.requests) <= 4  # the limit's rows, one more at most in flight
    audit = project.query("select node_id, command, status, api_calls from dbt_llm.llm_audit")
    assert [a[1:3] for a in audit] == [("show", "preview")] and audit[0][3] == len(project.server.requests)

    project.write("models/v.sql", "{{ config(materialized='view') }}\n" + classify_model())
    result = project.dbt("show", "--select", "v", ok=False)
    assert "the model is materialized as view" in str(result.exception or result.result)


def test_microbatch_batches_run_one_after_another_on_full_refresh_and_log_what_they_audit(
    project: DbtProject,
) -> None:
    # Five days: dbt runs the first and the last batch alone, the ones between at once unless told not to.
    rows = ["id,created_at,body"] + [
        f"{d}{i},2024-01-0{d} 0{i}:00:00,day {d} ticket {i}" for d in range(1, 6) for i in range(3)
    ]
    project.write("seeds/events.csv", "\n".join(rows) + "\n")
    project.write(
        "seeds/events.yml",
        "version: 2\nseeds:\n  - name: events\n    config:\n      event_time: created_at\n"
        "      column_types: {created_at: timestamp}\n",
    )
    project.write("models/mb.sql", MICROBATCH)
    project.dbt("seed")
    window = ["--event-time-start", "2024-01-01", "--event-time-end", "2024-01-06"]
    project.dbt("run", "--select", "mb", *window)
    project.server.latency = 0.3  # each batch takes at least that long
    project.execute("delete from dbt_llm.llm_cache")
    log = project.root / "logs" / "dbt.log"
    before = len(log.read_text())
    project.dbt("run", "--select", "mb", "--full-refresh", *window)
    audit = project.query(
        "select batch_id, started_at, finished_at, api_calls from dbt_llm.llm_audit "
        "where invocation_id = (select invocation_id from dbt_llm.llm_audit order by started_at desc limit 1) "
        "order by started_at"
    )
    assert [a[0] for a in audit] == [f"2024010{d}" for d in range(1, 6)]
    for (_, _, finished, _), (_, started, _, _) in itertools.pairwise(audit):
        assert finished <= started  # the next batch began after the last one was settled
    lines = [line for line in log.read_text()[before:].splitlines() if "llm_classify (gpt-4o-mini)" in line]
    for batch_id, _, _, calls in audit:
        said = [line for line in lines if f"batch {batch_id} of" in line]
        assert calls == 3 and len(said) == 1 and f", {calls} API calls" in said[0], (batch_id, lines)
