"""escalate_below='auto' with golden=: the threshold is the lowest at which the cascade agrees with the
large model on cascade_target of the golden inputs. Real dbt runs against the fake server, whose small
model gives each golden input a known confidence (set_logprobs) and whose large model disagrees with it
on known inputs (change_answers), so the threshold chosen is exact; and unit tests of choose_threshold."""

from __future__ import annotations

import pytest
from conftest import DbtProject

from dbt_llm.calls.cascade import choose_threshold

SMALL, LARGE = "gpt-4o-mini", "gpt-4o"
LABELS = "['billing', 'shipping', 'other']"


def probs(label: str, p: float) -> dict[str, float]:
    other = "other" if label != "other" else "billing"
    return {label: p, other: 1 - p}


# (input, small confidence, whether the large model agrees with the small one)
GOLDEN = [
    ("golden billing g100", 1.0, True),
    ("golden billing g60", 0.6, False),
    ("golden shipping g70", 0.7, True),
    ("golden shipping g90", 0.9, True),
    ("golden billing g80", 0.8, False),
]
# Over the thresholds 0.6, 0.7, 0.8, 0.9, 1.0 the cascade agrees on 3, 4, 4, 5, 5 of the 5 inputs.
ROWS = [  # (id, body, small confidence)
    (1, "billing row r100", 1.0),
    (2, "shipping row r85", 0.85),
    (3, "billing row r75", 0.75),
    (4, "shipping row r65", 0.65),
]


def project_with_cascade(project: DbtProject, **args: object) -> DbtProject:
    project.write("seeds/t.csv", "id,body\n" + "".join(f"{i},{b}\n" for i, b, _ in ROWS))
    project.write("seeds/golden_t.csv", "input,expected\n" + "".join(f"{t},{t.split()[1]}\n" for t, _, _ in GOLDEN))
    project.dbt("seed")
    for text, p, agrees in GOLDEN:
        if p < 1:  # every token is certain unless set
            project.server.set_logprobs(text.split()[-1], probs(text.split()[1], p), model=SMALL)
        if not agrees:
            project.server.change_answers(text.split()[-1], model=LARGE)
    for _, body, p in ROWS:
        if p < 1:
            project.server.set_logprobs(body.split()[-1], probs(body.split()[0], p), model=SMALL)
    write_model(project, **args)
    return project


def write_model(project: DbtProject, **args: object) -> None:
    extra = "".join(f", {k}={v!r}" for k, v in args.items())
    call = (
        f"dbt_llm.llm_classify('body', {LABELS}, model='{SMALL}', escalate_to='{LARGE}', escalate_below='auto', "
        f"golden=ref('golden_t'){extra})"
    )
    project.write("models/m.sql", f"select id, {{{{ {call} }}}} as v from {{{{ ref('t') }}}}\n")


def asked(project: DbtProject, of: str) -> list[str]:
    return sorted(r.text for r in project.server.requests if r.model == of)


def audit(project: DbtProject) -> dict[str, tuple[object, ...]]:
    rows = project.query(
        "select model, rows, cascade_threshold, cascade_agreement, api_calls, cost_usd from dbt_llm.llm_audit "
        "where invocation_id = (select invocation_id from dbt_llm.llm_audit order by started_at desc limit 1)"
    )
    return {str(r[0]): r[1:] for r in rows}


GOLDEN_TEXTS = sorted(t for t, _, _ in GOLDEN)


def run_logged(project: DbtProject, *args: str) -> str:
    log = project.root / "logs" / "dbt.log"
    size = len(log.read_text()) if log.exists() else 0
    project.dbt("run", "--select", "m", *args)
    return log.read_text()[size:]


def test_auto_picks_the_threshold_from_the_golden_set_and_a_rerun_sends_nothing(project: DbtProject) -> None:
    project = project_with_cascade(project)
    log = run_logged(project)
    # The target 0.95 needs 5/5: first reached at 0.9, where 3 of the 5 golden inputs are escalated.
    assert (
        "dbt_llm cascade: llm_classify(body) in model.dbt_llm_example.m: escalate_below auto = 0.9: the cascade "
        f"agrees with {LARGE} on 5/5 golden inputs (target 0.95); 60% of them escalated"
    ) in log
    rows = sorted(b for _, b, _ in ROWS)
    # Each golden input asked once of each model; the rows below 0.9 (and only those) of the large model.
    assert asked(project, SMALL) == sorted(GOLDEN_TEXTS + rows)
    assert asked(project, LARGE) == sorted([*GOLDEN_TEXTS, "billing row r75", "shipping row r65", "shipping row r85"])
    got = audit(project)
    assert got[SMALL][:3] == (4, pytest.approx(0.9), pytest.approx(1.0))  # rows: the model's only
    assert got[LARGE][:3] == (3, pytest.approx(0.9), pytest.approx(1.0))
    assert all(got[m][3] > 0 and got[m][4] > 0 for m in (SMALL, LARGE))  # the golden inputs are paid for
    values = [r[0] for r in project.query("select v from m order by id")]
    assert values[0] == "billing"

    project.server.reset()  # a rerun: every golden answer and every row is cached
    log = run_logged(project)
    assert project.server.requests == []
    assert "escalate_below auto = 0.9:" in log
    assert [r[0] for r in project.query("select v from m order by id")] == values


def test_a_lower_cascade_target_chooses_a_lower_threshold(project: DbtProject) -> None:
    project = project_with_cascade(project, cascade_target=0.8)
    log = run_logged(project)
    assert f"escalate_below auto = 0.7: the cascade agrees with {LARGE} on 4/5 golden inputs (target 0.8); 20%" in log
    assert asked(project, LARGE) == sorted([*GOLDEN_TEXTS, "shipping row r65"])  # only the row below 0.7
    assert audit(project)[SMALL][1:3] == (pytest.approx(0.7), pytest.approx(0.8))


def test_the_profile_s_cascade_target_applies_unless_the_macro_gives_one(project: DbtProject) -> None:
    project.plugin_config["cascade_target"] = 0.8
    project = project_with_cascade(project)
    log = run_logged(project)
    assert f"escalate_below auto = 0.7: the cascade agrees with {LARGE} on 4/5 golden inputs (target 0.8)" in log
    write_model(project, cascade_target=0.95)
    log = run_logged(project)
    assert f"escalate_below auto = 0.9: the cascade agrees with {LARGE} on 5/5 golden inputs (target 0.95)" in log


def test_a_dry_run_uses_the_threshold_the_last_run_chose(project: DbtProject) -> None:
    project = project_with_cascade(project)
    log = run_logged(project, "--vars", "{dbt_llm_dry_run: true}")
    assert project.server.requests == []
    assert "escalate_below auto = 1: a dry run asks no golden input, so it uses 1.0" in log
    run_logged(project)
    project.server.reset()
    log = run_logged(project, "--vars", "{dbt_llm_dry_run: true}")
    assert "escalate_below auto = 0.9: a dry run asks no golden input, so it uses the last run's threshold" in log
    assert project.server.requests == []


def test_auto_without_a_golden_set_fails_at_compile_time(project: DbtProject) -> None:
    project.write("seeds/t.csv", "id,body\n1,x\n")
    project.dbt("seed")
    call = f"dbt_llm.llm_classify('body', {LABELS}, escalate_to='{LARGE}', escalate_below='auto')"
    project.write("models/bad.sql", f"select {{{{ {call} }}}} as v from {{{{ ref('t') }}}}\n")
    result = project.dbt("compile", "--select", "bad", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert "escalate_below='auto' chooses the threshold from a golden set" in message, message
    assert "golden=ref(" in message and project.server.requests == []


# -- choose_threshold: (small answer, its confidence, large answer) per golden input --
SET = [("a", 1.0, "a"), ("a", 0.6, "b"), ("b", 0.7, "b"), ("b", 0.9, "b"), ("a", 0.8, "b")]


@pytest.mark.parametrize(("target", "threshold", "agree"), [(0.5, 0.6, 3), (0.8, 0.7, 4), (0.95, 0.9, 5), (1, 0.9, 5)])
def test_the_lowest_threshold_reaching_the_target(target: float, threshold: float, agree: int) -> None:
    choice = choose_threshold(SET, target)
    assert (choice.threshold, choice.agree, choice.inputs, choice.reached) == (threshold, agree, 5, True)


def test_rows_at_the_threshold_keep_the_small_answer_and_unknown_confidences_escalate() -> None:
    choice = choose_threshold([("a", 0.7, "b"), ("a", None, "b"), ("a", 0.9, "a")], 1.0)
    assert (choice.threshold, choice.agree, choice.escalated) == (0.9, 3, 2)


def test_an_empty_set_or_no_agreement_escalates_everything_below_full_confidence() -> None:
    empty = choose_threshold([], 0.95)
    assert (empty.threshold, empty.inputs, empty.reached, empty.agreement) == (1.0, 0, False, None)
    certain_but_wrong = choose_threshold([("a", 1.0, "b"), ("a", 1.0, "b")], 0.95)
    assert (certain_but_wrong.threshold, certain_but_wrong.agree, certain_but_wrong.reached) == (1.0, 0, False)
