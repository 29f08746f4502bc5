"""A preview before a change is paid: `--vars '{dbt_llm_dry_run: true, dbt_llm_compare: N}'`, in real dbt runs."""

from __future__ import annotations

from conftest import DbtProject

LABELS = "['billing', 'bug', 'feature', 'other']"
DRY_COMPARE = "{dbt_llm_dry_run: true, dbt_llm_compare: 10}"


GOLDEN = """input,expected
golden a: a billing problem,billing
"golden b: a bug, the app crashes",bug
golden c: a feature request,feature
golden d: other stuff,other
"""


def model(project: DbtProject, instructions: str | None = None, golden: bool = False) -> None:
    extra = "" if instructions is None else f", instructions='{instructions}'"
    extra += ", golden=ref('golden')" if golden else ""
    project.write(
        "models/m.sql",
        f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}{extra}) }}}} as l from {{{{ ref('t') }}}}\n",
    )


def tickets(project: DbtProject, n: int) -> None:
    rows = ["id,body"] + [f"{i},ticket {i}: {'my invoice is wrong' if i % 2 else 'the app crashes'}" for i in range(n)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    model(project)
    project.dbt("seed")


def dry_audit(project: DbtProject) -> tuple[object, ...]:
    return project.query(
        "select status, est_requests, api_calls, compare_rows, compare_agree from dbt_llm.llm_audit "
        "order by started_at desc limit 1"
    )[0]


def test_a_compare_sends_only_its_sample_reports_agreement_and_the_real_run_reuses_it(project: DbtProject) -> None:
    project.write("seeds/golden.csv", GOLDEN)
    tickets(project, 40)
    model(project, golden=True)
    project.dbt("run")
    assert len(project.server.requests) == 44  # the rows, and the golden set: 4/4 right

    # The spec changes (new instructions): every row would be paid again.
    model(project, "Tickets come from the help desk.", golden=True)
    project.server.reset()
    project.server.change_answers(match="crashes")  # the new spec answers the crash tickets differently
    log = project.root / "logs" / "dbt.log"
    size = len(log.read_text())
    project.dbt("run", "--vars", DRY_COMPARE)
    sent = [r.text for r in project.server.requests]
    sampled = [text for text in sent if not text.startswith("golden")]
    assert len(sampled) == len(set(sampled)) == 10  # only the sample and the golden set were sent
    assert len(sent) == 14
    assert all(r.schema is not None for r in project.server.requests)
    differs = sum("crashes" in text for text in sampled)
    assert dry_audit(project) == ("dry_run", 40, 14, 10, 10 - differs)
    said = log.read_text()[size:]
    assert "Golden accuracy: last run 4/4 = 1.00, new spec 3/4 = 0.75." in said  # golden b crashes
    assert (
        f"Of 10 sampled row(s) asked the new spec, 10 have an answer of the last run's spec and {10 - differs}" in said
    )

    # The real run reuses the sample's answers: it pays the other 30.
    project.server.reset()
    project.dbt("run")
    assert len(project.server.requests) == 30  # the golden set was answered by the compare, too
    assert not {r.text for r in project.server.requests} & set(sent)


def test_a_compare_of_an_unchanged_spec_sends_nothing_and_compare_needs_a_dry_run(project: DbtProject) -> None:
    tickets(project, 12)
    project.dbt("run")
    rows = ["id,body"] + [f"{i},ticket {i}: {'my invoice is wrong' if i % 2 else 'the app crashes'}" for i in range(17)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")  # 5 new rows, the same spec
    project.dbt("seed")
    project.server.reset()
    log = project.root / "logs" / "dbt.log"
    size = len(log.read_text())
    project.dbt("run", "--vars", DRY_COMPARE)
    assert project.server.requests == []
    assert dry_audit(project) == ("dry_run", 5, 0, 0, 0)
    assert "its spec is the one the last run used; nothing to compare" in log.read_text()[size:]

    result = project.dbt("run", "--vars", "{dbt_llm_compare: 10}", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert "dbt_llm_compare previews a change before it is paid, so it runs with a dry run" in message
    assert project.server.requests == []
