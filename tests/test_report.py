"""Who spends what: a real dbt run writes owner, group, tags and meta into llm_audit; the package's
llm_cost_daily view sums it per day; `dbt-llm report` turns several days of it into one offline HTML
page, which headless Chromium renders: its DOM holds the charts, the owners, the models and the audit's totals."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from conftest import DbtProject
from report_browser import ARTIFACTS, Dom, render, screenshot

from dbt_llm.cli import main

GROUPS = """
groups:
  - name: finance
    owner: {name: Finance Team, email: finance@example.com}
models:
  - name: invoices
    config:
      group: finance
      meta: {cost_center: '42', dbt_llm: {on_error: fail}}
  - name: tickets
    config:
      tags: [nightly, support]
      meta: {owner: support@example.com, team: support}
  - name: notes
    config:
      meta: {dbt_llm: {on_error: 'null'}}
"""
INVOICES = """select id, {{ dbt_llm.llm_classify("'invoice ' || id", ['billing', 'other']) }} as kind
from range(6) t(id)"""
TICKETS = """select id, {{ dbt_llm.llm_classify("'ticket about bug ' || id", ['bug', 'other']) }} as kind
from range(4) t(id)"""
NOTES = """select id, {{ dbt_llm.llm_extract("'note ' || id", {'topic': 'string'}) }} as f from range(3) t(id)"""


def _attributed_project(project: DbtProject) -> None:
    # The project's own models are tables; a project-wide `+materialized` would apply to the package's view too.
    project.write(
        "dbt_project.yml",
        "name: dbt_llm_example\nversion: '1.0.0'\nconfig-version: 2\nprofile: dbt_llm_example\n"
        "models:\n  dbt_llm_example:\n    +materialized: table\n",
    )
    project.write("models/schema.yml", GROUPS)
    project.write("models/invoices.sql", INVOICES)
    project.write("models/tickets.sql", TICKETS)
    project.write("models/notes.sql", NOTES)


def _backdate(project: DbtProject, days: int) -> None:
    """Copies of the run's audit rows on earlier days (other invocations), so the report has a history."""
    for back in range(1, days):
        project.execute(
            f"""insert into dbt_llm.llm_audit by name
            select * replace ('past-{back}-' || invocation_id as invocation_id,
                              started_at - interval {back} day as started_at,
                              finished_at - interval {back} day as finished_at,
                              cost_usd * {back + 1} as cost_usd)
            from dbt_llm.llm_audit where invocation_id not like 'past-%'"""
        )


def test_audit_rows_carry_owner_group_tags_and_meta(project: DbtProject) -> None:
    """The group's owner, else meta.owner, else NULL; meta without dbt-llm's keys; [] and {} when none."""
    _attributed_project(project)
    project.dbt("run")
    _assert_attributed(project)


def _assert_attributed(project: DbtProject) -> None:
    rows = project.query(
        "select node_id, owner, group_name, tags, meta::varchar from dbt_llm.llm_audit order by node_id"
    )
    assert [(n, o, g, t, json.loads(m)) for n, o, g, t, m in rows] == [
        ("model.dbt_llm_example.invoices", "Finance Team <finance@example.com>", "finance", [], {"cost_center": "42"}),
        ("model.dbt_llm_example.notes", None, None, [], {}),
        (
            "model.dbt_llm_example.tickets",
            "support@example.com",
            None,
            ["nightly", "support"],
            {"owner": "support@example.com", "team": "support"},
        ),
    ]


def _history(project: DbtProject) -> None:
    """Three days: today's run and two earlier copies; one earlier day scored a golden set and a recheck,
    and saved through batch mode (figures the page must show as they are)."""
    _backdate(project, 3)
    project.execute(
        "update dbt_llm.llm_audit set golden_rows = 10, golden_correct = 8, recheck_rows = 5, recheck_agree = 4, "
        "batch_answers = rows, batch_saved_usd = 0.0125 "
        "where invocation_id like 'past-1-%' and node_id like '%invoices'"
    )


def _figures(dom: Dom, name: str) -> list[list[str]]:
    (table,) = dom.find("table", data_figures=name)
    return [[td.text for td in tr.find("td")] for tr in table.find("tr") if tr.find("td")]


def test_report_renders_owners_models_and_the_audits_totals_offline(project: DbtProject, tmp_path: Path) -> None:
    _attributed_project(project)
    project.server.inject("invalid", times=4, match="note 2")  # every attempt: a failed row, kept NULL
    project.dbt("run", "--vars", "{dbt_llm_models: true}")
    _assert_attributed(project)
    _history(project)
    out = tmp_path / "report.html"
    assert main(["report", "--db", str(project.db_path), "--days", "30", "--out", str(out)]) == 0
    html = out.read_text()
    assert "<script src" not in html and "<link" not in html and "url(" not in html  # nothing fetched

    dom = render(out)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "report.dom.html").write_text(html)
    screenshot(out, ARTIFACTS / "report.png")
    assert dom.find("html", data_script="ran"), "the page's script ran"
    charts = dom.find("svg", class_="chart")
    assert len(charts) >= 12 and all(c.find("rect") or c.find("circle") for c in charts[:4])

    usd, rows, calls, tokens, failed = project.query(
        "select sum(cost_usd), sum(rows), sum(api_calls), sum(prompt_tokens + completion_tokens), sum(failed_rows) "
        "from dbt_llm.llm_audit"
    )[0]
    assert usd > 0 and failed == 3  # the failed row, on each of the 3 days
    totals = {e.attrs["data-total"]: e.text for e in dom.find("b") if "data-total" in e.attrs}
    assert totals["usd"] == f"${usd:,.4f}"
    assert (totals["rows"], totals["calls"], totals["tokens"]) == (f"{rows:,}", f"{calls:,}", f"{tokens:,}")
    assert totals["saved_usd"] == "$0.0125"

    # Spend by model, shown first; the owners' split is behind the switch, and the top owners are listed.
    spend = dom.find("div", class_="spend-panel", data_dim="model")[0]
    assert not spend.hidden and "gpt-4o-mini" in spend.text
    assert dom.find("div", class_="spend-panel", data_dim="owner")[0].hidden
    days = _figures(dom, "spend-model")
    assert len(days) == 4 and days[-1] == ["total", f"${usd:,.4f}", f"${usd:,.4f}"]  # 3 days and the total
    per_day = project.query(
        "select cast(started_at as date)::varchar, sum(cost_usd) from dbt_llm.llm_audit group by 1 order by 1"
    )
    assert [row[:2] for row in days[:-1]] == [[d, f"${c:,.4f}"] for d, c in per_day]
    owners = {row[0]: row[1] for row in _figures(dom, "top-owners")}
    by_owner = project.query("select coalesce(owner, '(no owner)'), sum(cost_usd) from dbt_llm.llm_audit group by 1")
    assert owners == {o: f"${c:,.4f}" for o, c in by_owner}
    assert {"Finance Team <finance@example.com>", "support@example.com"} <= set(owners)
    assert _figures(dom, "error-kinds") == [["invalid_answer", "1"]]
    assert [row[1] for row in _figures(dom, "golden")].count("80.0%") == 1  # 8 of 10, on one day
    assert [row[1] for row in _figures(dom, "recheck")].count("80.0%") == 1  # 4 of 5

    by_owner_view = render(out, "owner")  # the switch, chosen by the page's address
    assert not by_owner_view.find("div", class_="spend-panel", data_dim="owner")[0].hidden
    assert by_owner_view.find("div", class_="spend-panel", data_dim="model")[0].hidden


def test_llm_cost_daily_sums_the_audit_per_day_node_owner_model_and_function(project: DbtProject) -> None:
    _attributed_project(project)
    project.dbt("run", "--vars", "{dbt_llm_models: true}")
    _backdate(project, 2)
    view = project.query(
        "select day, node_id, owner, model, function, rows, calls, tokens, cost_usd from main.llm_cost_daily "
        "order by all"
    )
    audit = project.query(
        "select cast(started_at as date), node_id, owner, model, function, sum(rows), sum(api_calls), "
        "sum(prompt_tokens + completion_tokens), sum(cost_usd) from dbt_llm.llm_audit group by all order by all"
    )
    assert view == audit and len(view) == 6
    assert {r[2] for r in view} == {"Finance Team <finance@example.com>", "support@example.com", None}
    # Off by default: a project that does not set the var has no view.
    project.execute("drop view main.llm_cost_daily")
    project.dbt("run")
    assert project.query("select count(*) from information_schema.tables where table_name = 'llm_cost_daily'") == [(0,)]


def test_a_database_an_older_plugin_wrote_still_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """No attribution, batch or golden columns and no llm_errors rows: those figures read as none."""
    db = tmp_path / "old.duckdb"
    with duckdb.connect(str(db)) as con:
        con.execute("create schema dbt_llm")
        con.execute(
            "create table dbt_llm.llm_audit (invocation_id varchar, node_id varchar, function varchar, model varchar, "
            "started_at timestamp, status varchar, rows bigint, cache_hits bigint, api_calls bigint, "
            "failed_rows bigint, prompt_tokens bigint, completion_tokens bigint, cost_usd double)"
        )
        con.execute("create table dbt_llm.llm_errors (error_kind varchar, created_at timestamp)")
        con.execute(
            "insert into dbt_llm.llm_audit values "
            "('a', 'model.p.x', 'classify', 'm1', now(), 'success', 10, 4, 6, 0, 600, 60, 0.25), "
            "('a', 'model.p.y', 'extract', 'm2', now() - interval 1 day, 'success', 5, 0, 5, 0, 500, 50, 0.5), "
            "('b', 'model.p.y', 'extract', 'm2', now(), 'dry_run', 5, 0, 0, 0, 0, 0, 0)"
        )
    out = tmp_path / "old.html"
    assert main(["report", "--db", str(db), "--days", "7", "--out", str(out)]) == 0
    assert "2 day(s), $0.7500, 15 rows, 11 API calls, 2 model(s), 0 owner(s)" in capsys.readouterr().out
    dom = Dom.parse(out.read_text())
    totals = {e.attrs["data-total"]: e.text for e in dom.find("b") if "data-total" in e.attrs}
    shown = (totals["usd"], totals["rows"], totals["tokens"], totals["saved_usd"])
    assert shown == ("$0.7500", "15", "1,210", "$0.0000")
    assert _figures(dom, "top-owners") == [["(no owner)", "$0.7500", "15", "11"]]
    assert "No golden set was scored" in dom.root.text


def test_report_names_what_is_missing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert main(["report", "--db", str(empty), "--out", str(tmp_path / "r.html")]) == 1
    assert "has no dbt_llm.llm_audit yet" in capsys.readouterr().err
    assert main(["report", "--db", str(empty), "--days", "0"]) == 2
    assert not (tmp_path / "r.html").exists()
