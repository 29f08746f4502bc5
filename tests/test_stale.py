"""Stale rows: the shipped test llm_up_to_date, and llm_calls, in real dbt runs."""

from __future__ import annotations

from conftest import DbtProject

MODEL = """{{{{ config(materialized='incremental', unique_key='id') }}}}
select id, body, {{{{ dbt_llm.llm_classify('body', {labels}) }}}} as category from {{{{ ref('t') }}}}
{{% if is_incremental() %}} where id not in (select id from {{{{ this }}}}) {{% endif %}}
"""
TESTS = """
version: 2
models:
  - name: m
    data_tests:
      - dbt_llm.llm_up_to_date: {arguments: {column: category, max_stale: 0}}
      - dbt_llm.llm_up_to_date: {arguments: {column: category}, config: {severity: warn, alias: stale_warn}}
"""


def seed(project: DbtProject, n: int) -> None:
    rows = ["id,body"] + [f"{i},ticket {i}: my invoice is wrong" for i in range(n)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.dbt("seed")


def judged(project: DbtProject) -> dict[str, tuple[str, str | None]]:
    """Each test's status, and the `problem` of its stored failing row."""
    result = project.dbt("test", ok=False)
    out = {}
    for r in result.result.results:
        problem = None
        if r.status in ("fail", "warn"):
            problem = project.query(f"select problem from {r.node.relation_name}")[0][0]
        out["warn" if r.node.alias == "stale_warn" else "fail"] = (str(r.status), problem)
    return out


def test_an_incremental_model_whose_labels_changed_has_stale_rows_until_a_full_refresh(project: DbtProject) -> None:
    seed(project, 20)
    project.write("models/m.sql", MODEL.format(labels="['billing', 'bug', 'other']"))
    project.write("models/schema.yml", TESTS)
    project.dbt("run")
    assert judged(project) == {"fail": ("pass", None), "warn": ("pass", None)}
    # Each call's spec is recorded per run: what its keys are made of.
    [(text_sql, cut, spec_hash, function)] = project.query(
        "select text_sql, truncate_at, spec_hash, function from dbt_llm.llm_calls"
    )
    assert (text_sql, cut, function, len(spec_hash)) == ("body", 20000, "classify", 64)
    assert project.query(
        f"select count(*) from m where sha256('{spec_hash}' || body) in (select key from dbt_llm.llm_cache)"
    ) == [(20,)]

    # New labels, 5 new rows: the incremental run asks only the new rows; the 20 old ones keep old answers.
    project.write("models/m.sql", MODEL.format(labels="['billing', 'bug', 'feature', 'other']"))
    seed(project, 25)
    project.dbt("run")
    assert len(project.server.requests) == 25
    project.server.reset()
    found = judged(project)
    assert project.server.requests == []  # keys recomputed in SQL: no call
    status, problem = found["fail"]
    assert status == "fail" and problem is not None
    assert problem.startswith("20 row(s) of model.dbt_llm_example.m have a `category` answered under an older spec")
    assert "more than max_stale 0" in problem and "--vars '{dbt_llm_refresh: true}'" in problem
    assert "dbt run --select m --full-refresh" in problem
    assert found["warn"][0] == "warn"

    # The spec judged is the code's now, not the last run's: labels changed again, no run yet.
    project.write("models/m.sql", MODEL.format(labels="['billing', 'bug', 'feature', 'question', 'other']"))
    assert judged(project)["fail"][1].startswith("25 row(s) of model.dbt_llm_example.m")  # type: ignore[union-attr]
    assert project.server.requests == []

    project.dbt("run", "--full-refresh")
    assert len(project.server.requests) == 25
    assert judged(project) == {"fail": ("pass", None), "warn": ("pass", None)}


def test_dbt_llm_refresh_reasks_only_the_stale_rows_of_an_incremental_model_in_place(project: DbtProject) -> None:
    seed(project, 20)
    project.write("models/m.sql", MODEL.format(labels="['billing', 'bug', 'other']"))
    project.write("models/schema.yml", TESTS)
    project.dbt("run")
    project.write("models/m.sql", MODEL.format(labels="['billing', 'bug', 'feature', 'other']"))
    seed(project, 25)
    project.dbt("run")
    project.server.reset()
    assert judged(project)["fail"][1].startswith("20 row(s)")  # type: ignore[union-attr]

    project.dbt("run", "--vars", "{dbt_llm_refresh: true}")
    sent = project.server.requests
    assert sorted(r.text for r in sent) == sorted(f"ticket {i}: my invoice is wrong" for i in range(20))
    # Each row holds the answer cached under the current spec, paid once and audited.
    assert project.query(
        "select count(*) from m join dbt_llm.llm_cache c on c.key = sha256(? || body) "
        "where m.category = c.result ->> '$.label'",
        [project.query("select spec_hash from dbt_llm.llm_calls order by created_at desc limit 1")[0][0]],
    ) == [(25,)]
    assert project.query("select sum(api_calls) from dbt_llm.llm_audit where status = 'success'")[0][0] == 45
    assert judged(project) == {"fail": ("pass", None), "warn": ("pass", None)}
    project.server.reset()
    project.dbt("run", "--vars", "{dbt_llm_refresh: true}")  # nothing stale: nothing sent
    project.dbt("run", "--full-refresh")  # every answer cached: nothing sent
    assert project.server.requests == []


def test_the_column_names_its_call_among_several_and_an_unknown_column_fails_at_compile_time(
    project: DbtProject,
) -> None:
    seed(project, 6)
    model = (
        "{{{{ config(materialized='incremental', unique_key='id') }}}}\n"
        "select id, body, {{{{ dbt_llm.llm_classify('body', {a}) }}}} as a,\n"
        "  coalesce({{{{ dbt_llm.llm_classify('body', ['x', 'y']) }}}}, 'none') b,\n"
        "  {{{{ dbt_llm.llm_extract('body', {{'amount': 'number'}}) }}}}.amount as amount\n"
        "from {{{{ ref('t') }}}}\n"
    )
    project.write("models/m.sql", model.format(a="['billing', 'bug']"))
    tests = "\n".join(
        f"      - dbt_llm.llm_up_to_date: {{arguments: {{column: {c}}}, config: {{alias: stale_{c}}}}}"
        for c in ("a", "b", "amount")
    )
    project.write("models/schema.yml", f"version: 2\nmodels:\n  - name: m\n    data_tests:\n{tests}\n")
    project.dbt("run")
    project.write("models/m.sql", model.format(a="['billing', 'bug', 'other']"))
    result = project.dbt("test", ok=False)
    assert {r.node.alias: str(r.status) for r in result.result.results} == {
        "stale_a": "fail",
        "stale_b": "pass",
        "stale_amount": "pass",
    }
    project.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: m\n    data_tests:\n      - dbt_llm.llm_up_to_date: {arguments: {column: c}}\n",
    )
    result = project.dbt("test", ok=False)
    message = str(result.result.results[0].message)
    assert "cannot tell which llm_* call fills column `c`" in message, message
    assert "llm_classify('body'), llm_classify('body'), llm_extract('body')" in message
