"""Golden sets (`golden=`) and the shipped test llm_accuracy, in real dbt runs against the fake server.

The fake server's classify answer is the first label, in the order of the labels, that the text names:
so each golden input below is answered as its comment says, and the figures are exact."""

from __future__ import annotations

from conftest import DbtProject

LABELS = "['billing', 'bug', 'feature', 'other']"
# (input, expected): 6 right, 3 'feature' answered 'bug', 1 'bug' answered 'billing' (named first).
GOLDEN = [
    ("my billing is off", "billing"),
    ("a bug in the export", "bug"),
    ("a feature for teams", "feature"),
    ("another feature please", "feature"),
    ("ticket 0: my invoice is wrong, billing", "billing"),  # also a row of the model: paid once
    ("other things", "other"),
    ("the bug in search is a feature gap", "feature"),  # answered bug
    ("bug: a feature is missing", "feature"),  # answered bug
    ("feature? no, a bug report", "feature"),  # answered bug (bug comes first in the labels)
    ("billing shows a bug", "bug"),  # answered billing
]
ACCURACY = """
version: 2
models:
  - name: m
    data_tests:
      - dbt_llm.llm_accuracy: {{arguments: {{min_accuracy: {min}}}}}
"""


def setup(project: DbtProject, golden: list[tuple[str, str]] = GOLDEN) -> None:
    rows = ["id,body"] + [f'{i},"ticket {i}: my invoice is wrong, billing"' for i in range(5)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.write("seeds/golden_tickets.csv", "input,expected\n" + "".join(f'"{i}",{e}\n' for i, e in golden))
    project.write(
        "models/m.sql",
        f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}, golden=ref('golden_tickets')) }}}} as l "
        "from {{ ref('t') }}\n",
    )
    project.dbt("seed")


def audit(project: DbtProject, node: str = "m") -> tuple[object, ...]:
    return project.query(
        "select rows, cache_hits, api_calls, golden_rows, golden_correct, failed_rows, status from dbt_llm.llm_audit "
        f"where node_id = 'model.dbt_llm_example.{node}' order by started_at desc limit 1"
    )[0]


def accuracy(project: DbtProject, minimum: float) -> tuple[str, str | None]:
    project.write("models/schema.yml", ACCURACY.format(min=minimum))
    result = project.dbt("test", "--select", "m", ok=False)
    [test] = result.result.results
    problem = None
    if test.status == "fail":
        problem = project.query(f"select problem from {test.node.relation_name}")[0][0]
    return str(test.status), problem


def test_golden_inputs_are_answered_with_the_call_s_spec_scored_and_judged_by_llm_accuracy(
    project: DbtProject,
) -> None:
    setup(project)
    project.dbt("run", "--select", "m")
    # 5 model rows share one text with a golden input; 9 golden texts more: each paid once.
    texts = [r.text for r in project.server.requests]
    assert sorted(texts) == sorted(
        {*(i for i, _ in GOLDEN), *(f"ticket {i}: my invoice is wrong, billing" for i in range(5))}
    )
    # The golden rows never enter the model's rows, nor its audit's rows; their requests are the model's.
    assert project.query("select count(*) from m") == [(5,)]
    assert audit(project) == (5, 0, 14, 10, 6.0, 0, "success")
    results = project.query(
        "select input, expected, answer, correct, score from dbt_llm.llm_golden_results order by input"
    )
    assert len(results) == 10 and sum(r[3] for r in results) == 6
    assert project.query(
        "select expected, answer, count(*) from dbt_llm.llm_golden_results where not correct "
        "group by all order by 3 desc"
    ) == [("feature", "bug", 3), ("bug", "billing", 1)]

    # The same call run over the golden inputs as a model: every answer from the cache, the same answers.
    project.server.reset()
    project.write(
        "models/g.sql",
        f"select input, {{{{ dbt_llm.llm_classify('input', {LABELS}) }}}} as l from {{{{ ref('golden_tickets') }}}}\n",
    )
    project.dbt("run", "--select", "g")
    assert project.server.requests == []
    assert audit(project, "g")[:3] == (10, 10, 0)
    assert project.query("select input, l from g order by input") == [(r[0], r[2]) for r in results]
    # golden= is no part of the spec: the two calls have one spec_hash.
    assert project.query("select count(distinct spec_hash), count(*) from dbt_llm.llm_calls") == [(1, 2)]

    # llm_accuracy passes at the figure, fails above it saying the figure and the mistakes.
    assert accuracy(project, 0.6) == ("pass", None)
    status, problem = accuracy(project, 0.61)
    assert status == "fail"
    assert (
        problem == "golden accuracy 6/10 = 0.60, below min_accuracy 0.61; most confused: feature→bug 3, bug→billing 1"
    )

    # A rerun sends nothing and scores again, per run.
    project.dbt("run", "--select", "m")
    assert project.server.requests == []
    assert audit(project)[2:5] == (0, 10, 6.0)
    assert project.query("select count(distinct invocation_id), count(*) from dbt_llm.llm_golden_results") == [(2, 20)]
