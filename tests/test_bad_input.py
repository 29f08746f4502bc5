"""Bad input never crashes a run or leaks made-up values; long inputs are cut or fail as chosen."""

from __future__ import annotations

import csv
import io

from conftest import DbtProject

NASTY = [
    None,
    "",
    "   ",
    "\t\n ",
    "x" * 40_000 + " billing",
    "Rechnung für 🧾 Abo, 日本語のテキスト, 中文",
    "it's a \"quoted\" bug; drop table users; -- '",
    "line one\nline two\r\nline three",
    "select * from llm_cache where 1=1 or ''='",
    "$$ {{ not jinja }} {% raw %} \\ backslash",
]
LABELS = ["bug", "billing", 'it\'s "quoted"', "a, b", "naïve ☃", "feature"]


def seed(project: DbtProject) -> None:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "body"])
    for i, text in enumerate(NASTY):
        writer.writerow([i, "" if text is None else text])
    project.write("seeds/nasty.csv", out.getvalue())
    project.write(
        "seeds/properties.yml",
        "seeds:\n  - name: nasty\n    config:\n      column_types: {id: integer, body: varchar}\n"
        "      quote_columns: false\n",
    )


def test_nasty_texts_and_labels(project: DbtProject) -> None:
    project.plugin_config["max_input_chars"] = 1000
    seed(project)
    # The CSV loader turns "" into NULL; make row 1 a real empty string.
    project.write(
        "models/m.sql",
        "select id, body, {{ dbt_llm.llm_classify('case when id = 1 then \\'\\' else body end', "
        + repr(LABELS)
        + ") }} as l, {{ dbt_llm.llm_extract('body', {'city': 'string'}) }} as e from {{ ref('nasty') }}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    rows = dict(project.query("select id, l from m order by id"))
    assert [rows[i] for i in range(4)] == [None, None, None, None]  # NULL, empty, blank: NULL, no call
    assert all(rows[i] in LABELS for i in range(4, len(NASTY)))
    texts = [r.text for r in project.server.requests]
    assert len(texts) == 2 * (len(NASTY) - 4)
    assert max(len(t) for t in texts) == 1000  # cut to max_input_chars, in SQL, before the key
    assert "日本語のテキスト" in "".join(texts) and "drop table users" in "".join(texts)
    assert project.query("select count(*) from dbt_llm.llm_errors")[0][0] == 0


def test_long_input_can_fail_the_row_with_a_reason(project: DbtProject) -> None:
    project.plugin_config.update(max_input_chars=1000, on_long_input="fail", on_error="null")
    seed(project)
    project.write(
        "models/m.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['bug', 'billing']) }} as l from {{ ref('nasty') }}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    assert project.query("select l from m where id = 4") == [(None,)]
    errors = project.query("select error_kind, message, attempts from dbt_llm.llm_errors")
    assert len(errors) == 1 and errors[0][0] == "input_too_long" and "40008 characters" in errors[0][1]
    assert errors[0][2] == 0
    assert all(len(r.text) < 1000 for r in project.server.requests)


def test_five_hundred_labels(project: DbtProject) -> None:
    labels = [f"label {i:03d}" for i in range(500)]
    project.write("seeds/t.csv", "id,body\n1,this is about label 123 really\n2,nothing here\n")
    project.write(
        "models/m.sql", f"select id, {{{{ dbt_llm.llm_classify('body', {labels!r}) }}}} as l from {{{{ ref('t') }}}}\n"
    )
    project.dbt("seed")
    project.dbt("run")
    result = dict(project.query("select id, l from m"))
    assert result[1] == "label 123" and result[2] in labels
    assert len(project.server.requests[0].schema["properties"]["label"]["enum"]) == 500


def test_a_long_input_that_fails_says_a_rerun_fails_it_again_and_counts_answers_per_function(
    project: DbtProject,
) -> None:
    project.plugin_config.update(max_input_chars=1000, on_long_input="fail")
    project.write("seeds/t.csv", "id,body\n1,short text\n2," + "x" * 1500 + "\n")
    project.write(
        "models/m.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['bug', 'billing']) }} as l,"
        " {{ dbt_llm.llm_extract('body', {'city': 'string'}) }} as e,"
        " {{ dbt_llm.llm_filter('body', 'is it about money?') }} as f from {{ ref('t') }}\n",
    )
    project.dbt("seed")
    result = project.dbt("run", ok=False)
    message = str(result.result.results[0].message)
    assert (
        "3 answer(s) in model.dbt_llm_example.m are missing (1 of llm_classify, 1 of llm_extract, 1 of llm_filter)"
        in message
    )
    assert "a rerun fails them again" in message and "max_input_chars" in message
    assert "the next run retries them" not in message


def test_a_microbatch_batch_failed_by_a_long_input_says_a_rerun_fails_it_again(project: DbtProject) -> None:
    project.plugin_config.update(max_input_chars=1000, on_long_input="fail")
    rows = ["id,created_at,body", "1,2024-01-01 01:00:00,short text", f"2,2024-01-02 01:00:00,{'x' * 1500}"]
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
        "select id, created_at, {{ dbt_llm.llm_classify('body', ['bug', 'billing']) }} as l from {{ ref('events') }}\n",
    )
    project.dbt("seed")
    result = project.dbt("run", "--event-time-start", "2024-01-01", "--event-time-end", "2024-01-03", ok=False)
    log = (project.root / "logs" / "dbt.log").read_text()
    said = [line for line in log.splitlines() if "got no valid answer, so this batch was not written" in line]
    assert said and "a rerun fails them again" in said[-1] and "max_input_chars" in said[-1], said
    assert "`dbt retry` reruns this batch" not in said[-1]
    assert len(result.result.results[0].batch_results.failed) == 1
