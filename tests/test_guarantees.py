"""Fault rates, dry runs and the generic tests shipped for users' models."""

from __future__ import annotations

from conftest import DbtProject

LABELS = "['billing', 'bug', 'feature', 'other']"


def tickets(project: DbtProject, n: int) -> None:
    rows = ["id,body"] + [f"{i},ticket {i}: my invoice is wrong" for i in range(n)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.write(
        "models/m.sql",
        f"select id, body, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l, "
        "{{ dbt_llm.llm_extract('body', {'amount': 'number'}) }} as e from {{ ref('t') }}\n",
    )
    project.dbt("seed")


def test_mixed_faults_end_valid_within_two_runs_and_each_answer_is_paid_once(project: DbtProject) -> None:
    project.plugin_config.update(max_attempts=4, request_timeout=1.0)
    project.server.hang_seconds = 2.0
    project.server.set_fault_rates(
        {"500": 0.05, "503": 0.02, "502_html": 0.02, "timeout": 0.01, "invalid": 0.05, "truncated": 0.02}, seed=7
    )
    tickets(project, 150)
    first = project.dbt("run", ok=False)
    if not first.success:
        assert "got no valid answer" in str(first.result.results[0].message)
        project.dbt("run")
    assert project.query("select count(*), count(l), count(e) from m")[0] == (150, 150, 150)
    answered = project.server.answered()
    assert len(answered) == 300  # one valid answer per row and function, never bought twice
    assert len({(r.text, bool(r.schema and "label" in r.schema["properties"])) for r in answered}) == 300
    faults = [r for r in project.server.requests if r.fault]
    assert len(faults) > 10
    retries = project.query("select sum(retries) from dbt_llm.llm_audit")[0][0]
    assert retries >= len([f for f in faults if f.fault != "timeout"]) - 10  # failed rows' last attempts are no retry


def test_dry_run_sends_nothing_and_reports_the_estimate(project: DbtProject) -> None:
    tickets(project, 40)
    project.dbt("run", "--vars", "{dbt_llm_dry_run: true}")  # succeeds: a dry run never fails a model
    assert project.server.requests == []
    log = (project.root / "logs" / "dbt.log").read_text()
    assert "would send 80 request(s)" in log and "Dry run so far: 80 request(s)" in log and "~$" in log
    audit = project.query(
        "select function, status, api_calls, est_requests, est_prompt_tokens > 0, est_cost_usd > 0 "
        "from dbt_llm.llm_audit order by function"
    )
    assert audit == [("classify", "dry_run", 0, 40, True, True), ("extract", "dry_run", 0, 40, True, True)]
    # A table is built from cached answers, with NULL where a call would be needed.
    assert project.query("select count(*), count(l), count(e) from m")[0] == (40, 0, 0)

    project.dbt("run")
    assert len(project.server.requests) == 80
    assert project.query("select count(*), count(l), count(e) from m")[0] == (40, 40, 40)
    project.server.reset()
    project.dbt("run", "--vars", "{dbt_llm_dry_run: true}")  # all cached: nothing to estimate, builds
    assert project.server.requests == []
    assert project.query("select count(l) from m")[0][0] == 40


def test_generic_tests_catch_what_they_promise(project: DbtProject) -> None:
    project.plugin_config.update(on_error="null", max_attempts=1)
    tickets(project, 20)
    project.server.inject("500", times=2, match="ticket 3:")
    project.write(
        "models/schema.yml",
        """
version: 2
models:
  - name: m
    data_tests:
      - dbt_llm.llm_error_rate: {arguments: {max_rate: 0.0}}
      - dbt_llm.llm_cost_below: {arguments: {max_usd: 0.000001}}
      - dbt_llm.llm_cost_below: {arguments: {max_usd: 1.0}, config: {alias: cost_ok}}
      - dbt_llm.llm_error_rate: {arguments: {max_rate: 0.5}, config: {alias: error_rate_ok}}
    columns:
      - name: l
        data_tests:
          - dbt_llm.llm_label_valid: {arguments: {labels: ['billing', 'bug', 'feature', 'other']}}
          - dbt_llm.llm_label_valid: {arguments: {labels: ['bug']}, config: {alias: label_narrow}}
      - name: e
        data_tests:
          - dbt_llm.llm_fields_typed: {arguments: {fields: {amount: number}}}
          - dbt_llm.llm_fields_typed: {arguments: {fields: {amount: integer}}, config: {alias: typed_wrong}}
""",
    )
    project.dbt("run")
    result = project.dbt("test", ok=False)
    outcome = {r.node.alias: r.status for r in result.result.results}
    failing = {alias for alias, status in outcome.items() if status == "fail"}
    passing = {alias for alias, status in outcome.items() if status == "pass"}
    assert failing == {
        next(a for a in outcome if a.startswith("dbt_llm_llm_error_rate_m_0")),
        next(a for a in outcome if a.startswith("dbt_llm_llm_cost_below_m_1")),
        "label_narrow",
        "typed_wrong",
    }, outcome
    assert {"cost_ok", "error_rate_ok"} <= passing and len(passing) == 4
    # A failure shows its figure and the limit: the failing row is stored, and dbt says where.
    stored = {}
    for r in result.result.results:
        if r.status == "fail" and r.node.alias.startswith(("dbt_llm_llm_cost_below", "dbt_llm_llm_error_rate")):
            assert "See test failures" in (r.message or "") or r.node.relation_name, r.message
            stored[r.node.alias[:22]] = project.query(f"select problem from {r.node.relation_name}")[0][0]
    assert stored["dbt_llm_llm_cost_below"].startswith("the last run cost $")
    assert "more than max_usd $0.000001" in stored["dbt_llm_llm_cost_below"]
    assert stored["dbt_llm_llm_error_rate"].startswith("the last run left 2 of 40 rows without an answer")
