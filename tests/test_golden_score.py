"""Golden scoring (functions/golden.py) and the plan of a call with golden=, at the seams."""

from __future__ import annotations

import json
from typing import Any

import pytest

from dbt_llm.calls.plan import plan_call
from dbt_llm.config import parse_config
from dbt_llm.errors import SpecError
from dbt_llm.functions.golden import score
from dbt_llm.functions.tasks import Task, build_task
from dbt_llm.pricing import PriceTable
from dbt_llm.spark.planning import prepare

DEFAULTS: dict[str, Any] = {"provider": "openai", "default_model": "gpt-4o-mini", "temperature": 0.0}
LABELS = ["billing", "bug", "feature"]


def task(function: str, **args: Any) -> Task:
    return build_task({"function": function, "where": f"llm_{function}(body) in model.x.m", **args}, **DEFAULTS)


def test_classify_scores_the_label_and_refuses_one_that_is_not_a_label() -> None:
    classify = task("classify", labels=LABELS)
    assert score(classify, "bug", '{"label":"bug"}').score == 1.0
    wrong = score(classify, " billing ", '{"label":"bug"}')
    assert (wrong.score, wrong.correct, wrong.expected, wrong.answer) == (0.0, False, "billing", "bug")
    with pytest.raises(SpecError, match=r"expects the label 'urgent', which is not one of the call's labels"):
        score(classify, "urgent", '{"label":"bug"}')


def test_multi_label_scores_the_jaccard_index_of_the_label_sets() -> None:
    multi = task("classify", labels=LABELS, multi_label=True)
    assert score(multi, ["bug", "billing"], '{"labels":["billing","bug"]}').score == 1.0
    assert score(multi, '["bug", "feature"]', '{"labels":["billing","bug"]}').score == pytest.approx(1 / 3)
    assert score(multi, [], '{"labels":[]}').score == 1.0
    assert score(multi, "feature", '{"labels":["billing"]}').score == 0.0
    # Expected and answer in the order of the labels, so equal sets read equal.
    assert score(multi, ["bug", "billing"], '{"labels":["billing"]}').expected == '["billing","bug"]'


def test_filter_takes_a_boolean_or_its_text() -> None:
    yes_no = task("filter", question="Is it urgent?")
    assert score(yes_no, True, '{"answer":true}').score == 1.0
    assert score(yes_no, "False", '{"answer":true}').score == 0.0
    with pytest.raises(SpecError, match="expects true or false"):
        score(yes_no, "maybe", '{"answer":true}')


def test_extract_scores_each_expected_field_after_the_grounding_normalisation() -> None:
    extract = task("extract", fields={"city": "string", "amount": "number", "tags": ["a", "b"]})
    right = score(extract, {"city": " new  YORK", "amount": 42}, '{"amount":42.0,"city":"New York","tags":null}')
    assert (right.score, right.wrong_fields) == (1.0, ())
    half = score(extract, '{"city": "Paris", "tags": null}', '{"amount":null,"city":"Lyon","tags":null}')
    assert (half.score, half.wrong_fields) == (0.5, ("city",))
    with pytest.raises(SpecError, match="expects the field 'cty', which the call does not extract"):
        score(extract, {"cty": "Paris"}, '{"amount":null,"city":"Paris","tags":null}')
    with pytest.raises(SpecError, match="the JSON of the expected fields"):
        score(extract, "Paris", '{"amount":null,"city":"Paris","tags":null}')


def test_golden_is_no_part_of_the_spec_or_the_cache_key() -> None:
    config = parse_config({"provider": "openai", "base_url": "http://127.0.0.1:1/v1"})
    args = {"function": "classify", "text": "body", "labels": LABELS, "node_id": "model.x.m"}
    plain = plan_call(args, "inv", config, PriceTable({}))
    golden = plan_call({**args, "golden": '"db"."main"."golden_tickets"'}, "inv", config, PriceTable({}))
    assert golden.golden == '"db"."main"."golden_tickets"' and plain.golden == ""
    assert (golden.task.spec_hash, golden.task.spec_json) == (plain.task.spec_hash, plain.task.spec_json)
    assert golden.handle == plain.handle


def test_spark_refuses_a_golden_set_when_the_model_compiles(tmp_path: Any) -> None:
    payload = {
        "function": "classify",
        "text": "body",
        "labels": LABELS,
        "node_id": "model.x.m",
        "invocation_id": "inv",
        "golden": "`golden_tickets`",
        "config": {"provider": "openai", "base_url": "http://127.0.0.1:1/v1"},
    }
    assert "golden sets are not available on Spark yet" in prepare(json.dumps(payload), str(tmp_path))
