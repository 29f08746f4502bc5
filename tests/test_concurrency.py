"""Duplicated inputs are paid once: within a model, and across models running on 4 dbt threads."""

from __future__ import annotations

from conftest import DbtProject

LABELS = "['billing', 'bug', 'feature', 'other']"


def test_a_text_that_appears_many_times_is_called_once(project: DbtProject) -> None:
    rows = ["id,body"] + [f"{i},complaint number {i % 10} about a bug" for i in range(3000)]
    project.write("seeds/dupes.csv", "\n".join(rows) + "\n")
    project.write(
        "models/m.sql",
        "{{ config(materialized='table') }}\n"
        f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('dupes') }}}}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    assert len(project.server.requests) == 10
    assert project.query("select count(*), count(l) from m")[0] == (3000, 3000)
    # 10 distinct texts: 10 rows paid, the other 2,990 reuse their answers.
    assert project.query("select rows, cache_hits, api_calls from dbt_llm.llm_audit")[0] == (3000, 2990, 10)


def test_four_threads_share_inputs_without_paying_twice_or_losing_writes(project: DbtProject) -> None:
    project.server.latency = 0.02
    rows = ["id,body"] + [f"{i},ticket {i % 150}: please fix the login bug" for i in range(600)]
    project.write("seeds/shared.csv", "\n".join(rows) + "\n")
    for n in range(4):
        # Each model reads the same texts in its own order.
        project.write(
            f"models/m{n}.sql",
            "{{ config(materialized='table') }}\n"
            f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l "
            f"from {{{{ ref('shared') }}}} order by hash(id + {n})\n",
        )
    project.dbt("seed")
    project.dbt("run", "--threads", "4")

    texts = [r.text for r in project.server.requests]
    assert len(texts) == len(set(texts)) == 150
    assert project.query("select count(*) from dbt_llm.llm_cache")[0][0] == 150
    for n in range(4):
        assert project.query(f"select count(*), count(l) from m{n}")[0] == (600, 600)
    audit = project.query("select sum(api_calls), sum(rows), count(*) from dbt_llm.llm_audit")[0]
    assert audit == (150, 2400, 4)


def test_long_runs_report_progress_in_the_dbt_log(project: DbtProject) -> None:
    project.plugin_config.update(progress_interval=0.2, max_concurrency=2)
    project.server.latency = 0.03
    rows = ["id,body"] + [f"{i},ticket {i} about a bug" for i in range(80)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.write(
        "models/m.sql", f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"
    )
    project.dbt("seed")
    project.dbt("run")
    log = (project.root / "logs" / "dbt.log").read_text()
    progress = [line for line in log.splitlines() if "req/s" in line and "model.dbt_llm_example.m llm_classify" in line]
    assert progress, "no progress line in logs/dbt.log"
    assert "calls" in progress[0] and "tokens" in progress[0] and "so far" in progress[0]
    assert "/80 texts answered" in progress[0] and "ETA " in progress[0]
    # A first run: no row is a hit, though the statement counted them all before their requests ended.
    assert all("rows (0 cached, 0 reused)" in line for line in progress), progress
    assert "80 API calls" in log  # the final summary of the model
