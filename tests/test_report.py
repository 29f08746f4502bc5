"""Who spends what: a real dbt run writes owner, group, tags and meta into llm_audit; the package's
llm_cost_daily view sums it per day; `dbt-llm report` turns several days of it into one offline HTML
page, which headless Chromium renders: its DOM holds the charts, the owners, the models and the audit's totals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import DbtProject
# from report_browser import ARTIFACTS, render

# from dbt_llm.cli import main

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
"""
INVOICES = """select id, {{ dbt_llm.llm_classify("'invoice ' || id", ['billing', 'other']) }} as kind
from range(6) t(id)"""
TICKETS = """select id, {{ dbt_llm.llm_classify("'ticket about bug ' || id", ['bug', 'other']) }} as kind
from range(4) t(id)"""
NOTES = """select id, {{ dbt_llm.llm_extract("'note ' || id", {'topic': 'string'}) }} as f from range(3) t(id)"""


def _attributed_project(project: DbtProject) -> None:
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
    _attributed_project(project)
    project.dbt("run")
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
