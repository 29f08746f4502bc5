"""The cached path is a join: a row the cache answers is counted for the audit in SQL (nextval() on a
sequence of its call's own) and touches no UDF. These check that the counts stay exact that way: blank
and NULL texts are not rows, a transaction dbt opens while compiling, a dry run's rollback and a
preview's LIMIT lose no count, and no sequence outlives the command."""

from __future__ import annotations

from conftest import DbtProject

LABELS = "['billing', 'bug', 'feature']"
# 1 row in 6 has a NULL text, 1 in 6 a blank one; the others repeat 10 texts.
SOURCE = """select i as id, case when i % 6 = 0 then null when i % 6 = 1 then ' \t '
  else 'ticket ' || (i % {{ var('k', 10) }}) || ': my invoice' end as body from range({{ var('n', 60) }}) t(i)
"""
# get_columns_in_relation begins a transaction while the model compiles: its sequence is made inside it.
MODEL = """{{ config(materialized='incremental', unique_key='id') }}
{%- set columns = adapter.get_columns_in_relation(ref('src')) %}
select id, body, {{ dbt_llm.llm_classify('body', LABELS) }} as l from {{ ref('src') }}
""".replace("LABELS", LABELS)


def texts(n: int, k: int = 10) -> list[str]:
    return [f"ticket {i % k}: my invoice" for i in range(n) if i % 6 > 1]


def last_audit(project: DbtProject) -> tuple[object, ...]:
    return project.query(
        "select command, status, rows, cache_hits, api_calls, est_requests from dbt_llm.llm_audit "
        "order by started_at desc limit 1"
    )[0]


def sequences(project: DbtProject) -> int:
    return int(project.query("select count(*) from duckdb_sequences()")[0][0])


def test_rows_are_counted_in_sql_and_blank_texts_are_not_rows(project: DbtProject) -> None:
    project.write("models/src.sql", SOURCE)
    project.write("models/m.sql", MODEL)
    project.dbt("run")
    rows, distinct = len(texts(60)), len(set(texts(60)))
    assert last_audit(project) == ("run", "success", rows, rows - distinct, distinct, 0)
    assert len(project.server.requests) == distinct
    assert project.query("select count(*), count(l) from m") == [(60, rows)]  # NULL and blank: NULL, no call
    assert sequences(project) == 0  # dropped when the command ended

    project.server.reset()
    project.dbt("run", "--select", "m", "--full-refresh")
    assert last_audit(project) == ("run", "success", rows, rows, 0, 0)  # every row a hit, counted in SQL
    assert project.server.requests == [] and sequences(project) == 0


def test_a_dry_run_rolled_back_and_a_preview_keep_their_counts(project: DbtProject) -> None:
    project.write("models/src.sql", SOURCE)
    project.write("models/m.sql", MODEL)
    project.dbt("run")
    project.server.reset()
    # 12 more source rows and 2 new texts: the dry run prices them, then rolls the incremental model back.
    project.dbt("run", "--vars", "{n: 72, k: 12, dbt_llm_dry_run: true}")
    rows = texts(72, 12)
    new = [t for t in rows if t not in set(texts(60))]
    assert last_audit(project) == ("run", "dry_run", len(rows), len(rows) - len(new), 0, len(set(new)))
    assert project.query("select count(*) from m") == [(60,)]  # rolled back
    assert project.server.requests == [] and sequences(project) == 0

    # A preview of every row (src has the 72 rows now): it pays for the 2 new texts, counts all its rows.
    project.dbt("show", "--select", "m", "--limit", "100")
    paid = len(set(new))
    assert last_audit(project) == ("show", "preview", len(rows), len(rows) - paid, paid, 0)
    assert sequences(project) == 0
