"""Rechecks (`dbt_llm_recheck`, the `recheck` key) and the shipped test llm_stable, in real dbt runs."""

from __future__ import annotations

from conftest import DbtProject

LABELS = "['billing', 'bug', 'feature', 'other']"
STABLE = """
version: 2
models:
  - name: m
    data_tests:
      - dbt_llm.llm_stable: {arguments: {min_agreement: 0.95}}
"""


def tickets(project: DbtProject, n: int) -> None:
    rows = ["id,body"] + [f"{i},ticket {i}: my invoice is wrong" for i in range(n)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.write(
        "models/m.sql", f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"
    )
    project.write("models/schema.yml", STABLE)
    project.dbt("seed")


def last_audit(project: DbtProject) -> tuple[object, ...]:
    return project.query(
        "select rows, cache_hits, api_calls, recheck_rows, recheck_agree, prompt_tokens, completion_tokens, cost_usd "
        "from dbt_llm.llm_audit order by started_at desc limit 1"
    )[0]


def test_a_recheck_reasks_cached_rows_counts_agreement_and_llm_stable_fails_on_a_changed_model(
    project: DbtProject,
) -> None:
    tickets(project, 20)
    project.dbt("run")
    cached = project.query("select key, result from dbt_llm.llm_cache order by key")
    labels = project.query("select id, l from m order by id")
    assert len(project.server.requests) == 20

    # A deterministic provider agrees fully; every recheck request is paid and audited.
    project.server.reset()
    project.dbt("run", "--vars", "{dbt_llm_recheck: 20}")
    sent = project.server.requests
    assert len(sent) == 20 and len({r.text for r in sent}) == 20
    rows, hits, calls, recheck_rows, agree, prompt, completion, cost = last_audit(project)
    assert (rows, hits, calls, recheck_rows, agree) == (20, 20, 20, 20, 20)
    assert (prompt, completion) == (sum(r.prompt_tokens for r in sent), sum(r.completion_tokens for r in sent))
    assert cost > 0
    assert project.dbt("test").success

    # A model changed behind the same name: 3 texts get other labels; the cached answers stay.
    project.server.reset()
    for i in (3, 7, 11):
        project.server.change_answers(match=f"ticket {i}:")
    project.dbt("run", "--vars", "{dbt_llm_recheck: 20}")
    assert last_audit(project)[2:5] == (20, 20, 17)
    assert project.query("select key, result from dbt_llm.llm_cache order by key") == cached
    assert project.query("select id, l from m order by id") == labels
    result = project.dbt("test", ok=False)
    [test] = result.result.results
    assert test.status == "fail"
    problem = project.query(f"select problem from {test.node.relation_name}")[0][0]
    assert problem.startswith("recheck agreement 17/20 = 0.85, below min_agreement 0.95"), problem

    # A run without a recheck: the test still judges the last recheck.
    project.server.reset()
    project.dbt("run")
    assert project.server.requests == []
    assert project.dbt("test", ok=False).result.results[0].status == "fail"


def test_a_recheck_samples_the_rows_this_run_read_and_the_config_key_sets_it_for_every_run(
    project: DbtProject,
) -> None:
    project.plugin_config["recheck"] = 5
    tickets(project, 30)
    project.dbt("run")  # nothing was cached: nothing to recheck
    assert len(project.server.requests) == 30
    assert last_audit(project)[3:5] == (0, 0)
    project.server.reset()
    project.dbt("run")
    sent = {r.text for r in project.server.requests}
    assert len(sent) == 5 and sent <= {f"ticket {i}: my invoice is wrong" for i in range(30)}
    assert last_audit(project)[2:5] == (5, 5, 5)
    # The var overrides the key; a dry run and a preview recheck nothing.
    project.server.reset()
    project.dbt("run", "--vars", "{dbt_llm_recheck: 0}")
    project.dbt("run", "--vars", "{dbt_llm_dry_run: true}")
    project.dbt("show", "--select", "m")
    assert project.server.requests == []
    # A bad value fails at compile time, naming the var and the fix.
    result = project.dbt("run", "--vars", "{dbt_llm_recheck: lots}", ok=False)
    assert "dbt_llm_recheck is 'lots'" in str(result.result.results[0].message)
