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


def test_filter_extract_and_multi_label_golden_sets_score_boolean_fields_and_jaccard(project: DbtProject) -> None:
    project.write("seeds/t.csv", 'id,body\n1,"city: Paris, amount: 42"\n2,a bug\n')
    # A boolean column, a column of JSON text, a model with a list column: each a way to write `expected`.
    project.write(
        "seeds/golden_filter.csv",
        'input,expected\n"answer: yes, urgent",true\ncalm day,false\n"answer: yes",false\nplease hurry,true\n',
    )
    project.write(
        "seeds/golden_extract.csv",
        "input,expected\n"
        '"city: Paris, amount: 42","{""city"": ""paris"", ""amount"": 42}"\n'  # case aside, 42 is 42.0: right
        '"city: Lyon, amount: 7","{""city"": ""Lyon"", ""amount"": 8}"\n'  # half right
        '"city: Rome","{""city"": ""Rome"", ""amount"": null}"\n'  # right: the text states no amount
        'nothing here,"{""city"": ""Oslo""}"\n',  # wrong
    )
    project.write(
        "models/golden_multi.sql",
        "select 'billing and bug' as input, ['billing', 'bug'] as expected\n"  # Jaccard 1
        "union all select 'a bug', ['bug', 'feature']\n"  # 1/2
        "union all select 'nothing', []::varchar[]\n"  # both empty: 1
        "union all select 'feature', ['billing']\n",  # 0
    )
    project.write(
        "models/m.sql",
        "select id,\n"
        "  {{ dbt_llm.llm_filter('body', 'Is it urgent?', golden=ref('golden_filter')) }} as urgent,\n"
        "  {{ dbt_llm.llm_extract('body', {'city': 'string', 'amount': 'number'}, "
        "golden=ref('golden_extract')) }} as x,\n"
        "  {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'feature'], multi_label=true, "
        "golden=ref('golden_multi')) }} as topics\n"
        "from {{ ref('t') }}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    assert project.query("select count(*) from m") == [(2,)]
    assert project.query(
        "select function, rows, golden_rows, golden_correct from dbt_llm.llm_audit "
        "where node_id = 'model.dbt_llm_example.m' order by function"
    ) == [("classify", 2, 4, 2.5), ("extract", 2, 4, 2.5), ("filter", 2, 4, 2.0)]
    assert project.query(
        "select function, input, expected, answer, score, wrong_fields from dbt_llm.llm_golden_results "
        "where not correct order by function, input"
    ) == [
        ("classify", "a bug", '["bug","feature"]', '["bug"]', 0.5, None),
        ("classify", "feature", '["billing"]', '["feature"]', 0.0, None),
        (
            "extract",
            "city: Lyon, amount: 7",
            '{"amount":8,"city":"Lyon"}',
            '{"amount":7.0,"city":"Lyon"}',
            0.5,
            ["amount"],
        ),
        ("extract", "nothing here", '{"city":"Oslo"}', '{"amount":null,"city":null}', 0.0, ["city"]),
        ("filter", "answer: yes", "false", "true", 0.0, None),
        ("filter", "please hurry", "true", "false", 0.0, None),
    ]
    status, problem = accuracy(project, 0.7)
    assert status == "fail"
    assert problem == (
        "golden accuracy 7/12 = 0.58, below min_accuracy 0.70; most confused: "
        '["billing"]→["feature"] 1, ["bug","feature"]→["bug"] 1, false→true 1; '
        "fields most often wrong: amount 1, city 1"
    )


def test_a_dry_run_prices_the_golden_inputs_and_a_preview_answers_none(project: DbtProject) -> None:
    setup(project)
    project.dbt("run", "--select", "m", "--vars", "{dbt_llm_dry_run: true}")
    assert project.server.requests == []
    # 5 model texts and the 9 golden texts that are not also a model row: each priced once.
    assert project.query(
        "select est_requests, golden_rows, status from dbt_llm.llm_audit order by started_at desc limit 1"
    ) == [(14, 0, "dry_run")]
    project.dbt("show", "--select", "m")
    assert sorted(r.text for r in project.server.requests) == [
        f"ticket {i}: my invoice is wrong, billing" for i in range(5)
    ]
    assert project.query("select count(*) from dbt_llm.llm_golden_results") == [(0,)]
    # Neither is a run: llm_accuracy has nothing to judge yet.
    assert accuracy(project, 0.9) == ("pass", None)


def test_a_golden_input_that_fails_is_not_scored_and_fails_no_model(project: DbtProject) -> None:
    setup(project)
    project.server.inject("500", times=100, match="other things")
    project.dbt("run", "--select", "m")
    # Its 4 attempts are paid by the model's audit row, like the 13 answered texts; it is no failed row.
    assert audit(project) == (5, 0, 17, 9, 5.0, 0, "success")
    assert project.query(
        "select input, answer, correct, score from dbt_llm.llm_golden_results where answer is null"
    ) == [("other things", None, None, None)]
    assert project.query("select error_kind from dbt_llm.llm_errors") == [("retries_exhausted",)]
    status, problem = accuracy(project, 0.9)
    assert status == "fail" and problem is not None
    assert problem.startswith("golden accuracy 5/9 = 0.56, below min_accuracy 0.90; most confused: feature→bug 3")
    assert problem.endswith(
        '; 1 golden input(s) got no answer and are not scored (see "warehouse"."dbt_llm".llm_errors)'
    )
    # A model whose last run answered no golden input fails the test, saying so.
    project.write(
        "models/m.sql", f"select {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"
    )
    project.dbt("run", "--select", "m")
    status, problem = accuracy(project, 0.9)
    assert status == "fail" and problem is not None
    assert problem.startswith("golden accuracy: the last run of model.dbt_llm_example.m answered no golden input")


def test_a_golden_set_without_its_columns_or_with_an_unknown_label_fails_the_model_naming_it(
    project: DbtProject,
) -> None:
    setup(project, golden=[("a bug", "bug")])
    project.write("seeds/no_expected.csv", "input,label\na bug,bug\n")
    project.write("seeds/odd_label.csv", "input,expected\na bug,urgent\n")
    project.dbt("seed")
    cases = {
        "ref('no_expected')": "llm_classify(body) in model.dbt_llm_example.m: the golden set "
        '"warehouse"."main"."no_expected" has no column `expected` (its columns: input, label)',
        "'golden_tickets'": "llm_classify(body) in model.dbt_llm_example.m: `golden` must be a relation",
        # Found when the post-hook scores it: the model fails, naming the relation and the input.
        "ref('odd_label')": "the golden set expects the label 'urgent', which is not one of the call's labels "
        "(billing, bug, feature, other); fix the golden row or the labels. (golden set "
        '"warehouse"."main"."odd_label", input \'a bug\')',
    }
    for golden, message in cases.items():
        project.write(
            "models/m.sql",
            f"select {{{{ dbt_llm.llm_classify('body', {LABELS}, golden={golden}) }}}} as l from {{{{ ref('t') }}}}\n",
        )
        result = project.dbt("run", "--select", "m", ok=False)
        assert message in str(result.result.results[0].message), result.result.results[0].message


def test_a_microbatch_model_answers_its_golden_set_once_per_run_in_its_last_batch(project: DbtProject) -> None:
    rows = ["id,created_at,body"] + [
        f"{d}{i},2024-01-0{d} 0{i}:00:00,day {d} ticket {i}" for d in (1, 2, 3) for i in range(2)
    ]
    project.write("seeds/events.csv", "\n".join(rows) + "\n")
    project.write(
        "seeds/events.yml",
        "version: 2\nseeds:\n  - name: events\n    config:\n      event_time: created_at\n"
        "      column_types: {created_at: timestamp}\n",
    )
    project.write("seeds/golden_tickets.csv", "input,expected\n" + "".join(f'"{i}",{e}\n' for i, e in GOLDEN))
    project.write(
        "models/mb.sql",
        "{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='created_at', "
        "batch_size='day', begin='2024-01-01') }}\n"
        f"select id, created_at, {{{{ dbt_llm.llm_classify('body', {LABELS}, golden=ref('golden_tickets')) }}}} as l "
        "from {{ ref('events') }}\n",
    )
    project.dbt("seed")
    project.dbt("run", "--select", "mb", "--event-time-start", "2024-01-01", "--event-time-end", "2024-01-04")
    assert len(project.server.requests) == 6 + 10
    assert project.query(
        "select batch_id, rows, golden_rows, golden_correct from dbt_llm.llm_audit order by batch_id"
    ) == [
        ("20240101", 2, 0, 0.0),
        ("20240102", 2, 0, 0.0),
        ("20240103", 2, 10, 6.0),
    ]
    assert project.query("select count(*) from dbt_llm.llm_golden_results") == [(10,)]
