"""with_confidence=true in real dbt runs against the local server, which gives token logprobs when asked:
the confidence is what the logprobs say, renormalised over the allowed answers; it is cached with the
answer; NULL where the provider gives none; per packed row; in batch mode; averaged in llm_audit."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import DbtProject

LABELS = "['billing', 'shipping', 'other']"
SEED = """id,body
1,refund for billing please
2,where is my shipping
3,refund for billing please
4,
"""
# "Sure" is no label: the grammar would mask it, so it counts for no answer.
REFUND = {"billing": 0.5, "shipping": 0.25, "Sure": 0.25}
EXACT = 1e-12


def classify(flag: str = "true", **args: object) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in args.items())
    return f"{{{{ dbt_llm.llm_classify('body', {LABELS}{extra}, with_confidence={flag}) }}}}"


def build(project: DbtProject, models: dict[str, str], *args: str) -> None:
    project.write("seeds/t.csv", SEED)
    for name, select in models.items():
        project.write(f"models/{name}.sql", f"select id, {select} as v from {{{{ ref('t') }}}}\n")
    project.dbt("seed")
    project.dbt("run", *args)


def values(project: DbtProject, model: str = "m", field: str = "label") -> list[tuple[object, object]]:
    return [(r[0], r[1]) for r in project.query(f"select v.{field}, v.confidence from {model} order by id")]


def test_classify_confidence_is_the_logprobs_renormalised_over_the_labels(project: DbtProject) -> None:
    project.server.set_logprobs("refund", REFUND)
    build(project, {"m": classify()})
    (label1, c1), (label2, c2), (label3, c3), (label4, c4) = values(project)
    assert (label1, label2, label3) == ("billing", "shipping", "billing")
    assert abs(c1 - 0.5 / 0.75) < EXACT and c3 == c1  # the repeated text reuses the answer and its confidence
    assert c2 == 1.0  # every token of that answer was certain
    assert (label4, c4) == (None, None)  # no text, no call
    assert project.query("select typeof(v) from m limit 1")[0][0] == 'STRUCT("label" VARCHAR, confidence DOUBLE)'
    assert {r.top_logprobs for r in project.server.requests} == {20}
    cached = project.query("select result, confidence from dbt_llm.llm_cache order by confidence")
    assert [r for r, _ in cached] == ['{"label":"billing"}', '{"label":"shipping"}']
    [mean] = project.query("select mean_confidence from dbt_llm.llm_audit")[0]
    assert abs(mean - (0.5 / 0.75 + 1.0) / 2) < EXACT  # over the 2 answers the run paid for

    project.server.reset()  # the distribution is gone: a cached row keeps the confidence it was answered with
    project.dbt("run")
    assert project.server.requests == []
    assert values(project) == [("billing", c1), ("shipping", 1.0), ("billing", c1), (None, None)]


def test_a_killed_run_is_settled_with_the_mean_confidence_it_cached(project: DbtProject) -> None:
    project.server.set_logprobs("refund", REFUND)
    project.write("seeds/t.csv", SEED)
    project.write("models/m.sql", f"select id, {classify()} as v from {{{{ ref('t') }}}}\n")
    project.write_profiles()
    # In another process: this one settles only runs it does not know, when it first opens the warehouse.
    dbt = [str(Path(sys.executable).with_name("dbt"))]
    where = ["--project-dir", str(project.root), "--profiles-dir", str(project.root)]
    subprocess.run([*dbt, "build", *where], check=True, capture_output=True)
    # What kill -9 leaves: the audit row still `running`, its counters behind what reached llm_cache.
    project.execute("update dbt_llm.llm_audit set status = 'running', mean_confidence = null")
    project.write("models/plain.sql", "select 1 as x\n")
    project.dbt("run", "-s", "plain")  # the next invocation settles it from llm_cache
    [(status, mean)] = project.query("select status, mean_confidence from dbt_llm.llm_audit")
    assert status == "interrupted" and abs(mean - (0.5 / 0.75 + 1.0) / 2) < EXACT


def test_with_confidence_is_no_part_of_the_cache_key(project: DbtProject) -> None:
    project.server.set_logprobs("refund", REFUND)
    build(project, {"plain": classify("false")})
    assert project.query("select v from plain order by id") == [("billing",), ("shipping",), ("billing",), (None,)]
    project.server.reset()
    project.write("models/m.sql", f"select id, {classify()} as v from {{{{ ref('t') }}}}\n")
    project.dbt("run", "--select", "m")
    assert project.server.requests == []  # answered by the cache: the same key
    assert abs(values(project)[0][1] - 0.5 / 0.75) < EXACT  # the confidence was asked for anyway


def test_filter_confidence_of_each_packed_row_comes_from_its_own_tokens(project: DbtProject) -> None:
    # The fake answers false to both; the distributions make their confidences differ.
    project.server.set_logprobs("refund", {"false": 0.5, "true": 0.25, "maybe": 0.25})
    project.server.set_logprobs("shipping", {"false": 0.25, "true": 0.5, "yes": 0.25})
    question = "Does the customer ask for money back?"
    build(
        project, {"m": f"{{{{ dbt_llm.llm_filter('body', '{question}', rows_per_request=4, with_confidence=true) }}}}"}
    )
    [packed] = project.server.requests  # both distinct texts in one request
    assert packed.ids == ("r1", "r2") and packed.top_logprobs == 20
    rows = values(project, field="value")
    assert [v for v, _ in rows] == [False, False, False, None]
    assert abs(rows[0][1] - 2 / 3) < EXACT and abs(rows[1][1] - 1 / 3) < EXACT and rows[3][1] is None
    assert project.query("select typeof(v) from m limit 1")[0][0] == 'STRUCT("value" BOOLEAN, confidence DOUBLE)'


def test_confidence_is_null_where_the_provider_gives_no_logprobs(project: DbtProject) -> None:
    project.server.logprobs = "ignored"
    build(project, {"m": classify()})
    assert values(project) == [("billing", None), ("shipping", None), ("billing", None), (None, None)]
    assert project.query("select count(*), count(confidence) from dbt_llm.llm_cache")[0] == (2, 0)
    assert project.query("select mean_confidence from dbt_llm.llm_audit") == [(None,)]


def test_a_provider_that_refuses_logprobs_still_answers_without_them(project: DbtProject) -> None:
    project.server.logprobs = "refused"  # a 400 naming logprobs, as reasoning models give
    build(project, {"m": classify()})
    assert values(project) == [("billing", None), ("shipping", None), ("billing", None), (None, None)]
    answered = [r for r in project.server.requests if r.status == 200]
    assert len(answered) == 2 and all(r.top_logprobs is None for r in answered)
    assert project.query("select count(*) from dbt_llm.llm_errors")[0][0] == 0
    assert project.query("select failed_rows, status from dbt_llm.llm_audit") == [(0, "success")]


def test_batch_mode_lines_ask_for_logprobs_and_keep_the_confidence(project: DbtProject) -> None:
    project.plugin_config.update(batch_poll_interval=0.05)
    project.server.set_logprobs("refund", REFUND)
    build(project, {"m": classify()}, "--vars", "{dbt_llm_mode: batch}")
    assert project.server.requests == [] and len(project.server.batches) == 1
    assert {r.top_logprobs for r in project.server.batch_requests} == {20}
    rows = values(project)
    assert abs(rows[0][1] - 0.5 / 0.75) < EXACT and rows[1] == ("shipping", 1.0)


@pytest.mark.parametrize(
    ("select", "error"),
    [
        (classify(multi_label=True), "with_confidence=true is not available for llm_classify with multi_label=true"),
        (classify("'yes'"), "`with_confidence` must be true or false; got 'yes'"),
    ],
)
def test_with_confidence_refused_where_it_means_nothing(project: DbtProject, select: str, error: str) -> None:
    project.write("seeds/t.csv", SEED)
    project.write("models/m.sql", f"select id, {select} as v from {{{{ ref('t') }}}}\n")
    project.dbt("seed")
    result = project.dbt("run", ok=False)
    assert not result.success
    messages = " ".join(str(getattr(r, "message", "")) for r in (result.result or []))
    assert error in messages + str(result.exception)
    assert project.server.requests == []
