"""Cascades (`escalate_to=`, `escalate_below=`) in real dbt runs against the fake server: every row is
asked of the call's model, and exactly the rows whose confidence is below the threshold are asked of
escalate_to, whose answer is final; each model's answers are the cache entries a plain call of that
model makes; the audit has a row per model.

The fake server names the label a text names, with every token certain unless set_logprobs says
otherwise; change_answers(match, model=...) makes one model answer those texts another label."""

from __future__ import annotations

import pytest
from conftest import DbtProject

SMALL, LARGE = "gpt-4o-mini", "gpt-4o"
LABELS = "['billing', 'shipping', 'other']"
SEED = """id,body
1,billing question sure
2,shipping question unsure
3,billing issue fairly sure
4,
5,shipping question unsure
"""
UNSURE = {"shipping": 0.5, "billing": 0.25, "Sure": 0.25}  # shipping: 0.5 / 0.75 among the labels
FAIRLY = {"billing": 0.85, "other": 0.15}  # billing: 0.85
EXACT = 1e-12


def classify(*, cascade: bool = True, model: str = SMALL, **args: object) -> str:
    extra = "".join(f", {k}={v!r}" for k, v in args.items())
    escalate = f", escalate_to='{LARGE}', escalate_below=0.8" if cascade else ""
    return f"{{{{ dbt_llm.llm_classify('body', {LABELS}, model='{model}'{escalate}{extra}) }}}}"


def model(project: DbtProject, name: str, select: str) -> None:
    project.write(f"models/{name}.sql", f"select id, {select} as v from {{{{ ref('t') }}}}\n")


def seeded(project: DbtProject) -> DbtProject:
    project.write("seeds/t.csv", SEED)
    project.dbt("seed")
    project.server.set_logprobs("unsure", UNSURE, model=SMALL)
    project.server.set_logprobs("fairly", FAIRLY, model=SMALL)
    project.server.change_answers("unsure", model=LARGE)  # the large model says otherwise
    return project


def asked(project: DbtProject, of: str) -> list[str]:
    return sorted(r.text for r in project.server.requests if r.model == of)


def values(project: DbtProject, name: str = "m") -> list[object]:
    return [r[0] for r in project.query(f"select v from {name} order by id")]


def audit(project: DbtProject) -> dict[str, tuple[object, ...]]:
    rows = project.query(
        "select model, rows, cache_hits, api_calls, prompt_tokens, cost_usd, status from dbt_llm.llm_audit "
        "where invocation_id = (select invocation_id from dbt_llm.llm_audit order by started_at desc limit 1)"
    )
    return {str(r[0]): r[1:] for r in rows}


@pytest.fixture
def cascade(project: DbtProject) -> DbtProject:
    return seeded(project)


def test_only_the_rows_below_the_threshold_are_asked_of_the_larger_model(cascade: DbtProject) -> None:
    model(cascade, "m", classify())
    cascade.dbt("run")
    assert asked(cascade, SMALL) == ["billing issue fairly sure", "billing question sure", "shipping question unsure"]
    assert asked(cascade, LARGE) == ["shipping question unsure"]  # its prefetch too: asked once, for its rows only
    large = values(cascade)[1]
    assert large not in (None, "shipping")  # the larger model's answer is final
    assert values(cascade) == ["billing", large, "billing", None, large]
    assert cascade.query("select typeof(v) from m limit 1")[0][0] == "VARCHAR"

    # The audit splits the rows and what each model cost: every row with text is the small model's, the
    # escalated ones (rows 2 and 5) the large model's.
    split = audit(cascade)
    assert set(split) == {SMALL, LARGE}
    assert split[SMALL][:3] == (4, 1, 3) and split[LARGE][:3] == (2, 1, 1)  # rows, cache_hits (reused), api_calls
    assert all(split[m][3] > 0 and split[m][4] > 0 and split[m][5] == "success" for m in (SMALL, LARGE))
    assert split[LARGE][4] > split[SMALL][4] / 3 * 10  # gpt-4o's price per token is over 10x gpt-4o-mini's

    cascade.server.reset()  # a rerun: the cache join gives every answer, the escalated ones included
    cascade.dbt("run")
    assert cascade.server.requests == []
    assert values(cascade) == ["billing", large, "billing", None, large]


def test_each_model_s_answers_are_the_plain_calls_cache_entries(cascade: DbtProject) -> None:
    model(cascade, "m", classify())
    cascade.dbt("run")
    large = values(cascade)[1]
    cascade.server.reset()
    # A plain call of the small model sends nothing; one of the large model only the texts not escalated.
    model(cascade, "plain_small", classify(cascade=False))
    model(cascade, "plain_large", classify(cascade=False, model=LARGE))
    cascade.dbt("run", "--select", "plain_small", "plain_large")
    assert asked(cascade, SMALL) == []
    assert asked(cascade, LARGE) == ["billing issue fairly sure", "billing question sure"]
    assert values(cascade, "plain_small") == ["billing", "shipping", "billing", None, "shipping"]
    assert values(cascade, "plain_large")[1] == large


def test_a_cascade_after_plain_calls_sends_only_what_they_did_not_ask(cascade: DbtProject) -> None:
    model(cascade, "plain_small", classify(cascade=False))
    cascade.dbt("run")
    cascade.server.reset()
    cascade.server.change_answers("unsure", model=LARGE)
    model(cascade, "m", classify(with_confidence=True))
    cascade.dbt("run", "--select", "m")
    assert asked(cascade, SMALL) == []  # the plain call's answers, with their confidence, decide
    assert asked(cascade, LARGE) == ["shipping question unsure"]
    got = cascade.query("select v.label, v.confidence from m order by id")
    assert got[0] == ("billing", 1.0) and got[2] == ("billing", pytest.approx(0.85, abs=EXACT))
    assert got[1][0] not in (None, "shipping") and got[1][1] == 1.0  # the large model's answer and confidence
    assert cascade.query("select typeof(v) from m limit 1")[0][0] == 'STRUCT("label" VARCHAR, confidence DOUBLE)'


def test_a_filter_cascade_escalates_its_unsure_rows_with_the_type_of_with_confidence(project: DbtProject) -> None:
    project.server.set_logprobs("unsure", {"true": 0.6, "false": 0.4}, model=SMALL)  # before seeded()'s rules
    cascade = seeded(project)
    question = "'Is it about shipping?'"
    escalate = f"model='{SMALL}', escalate_to='{LARGE}', escalate_below=0.9, with_confidence=true"
    model(cascade, "m", f"{{{{ dbt_llm.llm_filter('body', {question}, {escalate}) }}}}")
    model(cascade, "plain", f"{{{{ dbt_llm.llm_filter('body', {question}, model='{SMALL}') }}}}")
    cascade.dbt("run", "--select", "m")
    assert asked(cascade, LARGE) == ["shipping question unsure"]
    assert len(asked(cascade, SMALL)) == 3
    assert cascade.query("select typeof(v) from m limit 1")[0][0] == 'STRUCT("value" BOOLEAN, confidence DOUBLE)'
    got = cascade.query("select v.value, v.confidence from m order by id")
    cascade.dbt("run", "--select", "plain")  # the small model's answers: cached by the cascade
    small = values(cascade, "plain")
    assert got[1] == (not small[1], 1.0) and got[4] == got[1]  # the large model's answer, certain
    assert [got[0][0], got[2][0]] == [small[0], small[2]] and got[3] == (None, None)
    assert len(asked(cascade, SMALL)) == 3  # the plain run sent nothing


BAD = [
    (
        f"llm_classify('body', ['a', 'b'], multi_label=true, escalate_to='{LARGE}', escalate_below=0.8)",
        "escalate_to is not available for llm_classify with multi_label=true",
    ),
    (
        f"llm_classify('body', ['a', 'b'], escalate_to='{LARGE}', escalate_below=0)",
        "`escalate_below` must be a number in (0, 1]",
    ),
    (
        f"llm_classify('body', ['a', 'b'], escalate_to='{LARGE}', escalate_below=1.5)",
        "`escalate_below` must be a number in (0, 1]",
    ),
    (
        f"llm_classify('body', ['a', 'b'], escalate_to='{LARGE}', escalate_below='auto')",
        "escalate_below='auto' chooses the threshold from a golden set, and the call has none: add golden=ref(",
    ),
    (f"llm_classify('body', ['a', 'b'], escalate_to='{LARGE}')", "escalate_to needs `escalate_below`"),
    ("llm_classify('body', ['a', 'b'], escalate_below=0.8)", "they need `escalate_to`"),
    (
        f"llm_filter('body', 'q?', model='{LARGE}', escalate_to='{LARGE}', escalate_below=0.8)",
        "is the call's own model",
    ),
    (
        f"llm_classify('body', ['a', 'b'], escalate_to='{LARGE}', escalate_below=0.8, cascade_target=2)",
        "`cascade_target` is the golden agreement escalate_below='auto' aims for; with a number",
    ),
]


@pytest.mark.parametrize(("call", "expected"), [b for b in BAD if b[1] is not None])
def test_bad_cascade_arguments_fail_at_compile_time(project: DbtProject, call: str, expected: str) -> None:
    project.write("seeds/t.csv", SEED)
    project.dbt("seed")
    model(project, "bad", f"{{{{ dbt_llm.{call} }}}}")
    result = project.dbt("compile", "--select", "bad", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert expected in message and "model.dbt_llm_example.bad" in message, message
    assert project.server.requests == []


def test_a_dry_run_prices_the_larger_model_for_every_row_it_might_get(cascade: DbtProject) -> None:
    model(cascade, "m", classify())
    cascade.dbt("run", "--vars", "{dbt_llm_dry_run: true}")
    assert cascade.server.requests == []
    est = dict(cascade.query("select model, est_requests from dbt_llm.llm_audit"))
    # Nothing is asked, so no confidence is known: every distinct text is priced for both (an upper bound).
    assert est == {SMALL: 3, LARGE: 3}
