"""A cascade's dry run prices escalate_to for the rows the first model would be asked times a share: the
last real run's share of this cascade, else ('auto') the cached golden inputs' share below the
threshold, else every row; the log says which. Real dbt runs against the fake server."""

from __future__ import annotations

import pytest
from conftest import DbtProject
from test_cascade import LARGE, SEED, SMALL, classify, model, seeded
from test_cascade_auto import project_with_cascade, run_logged, write_model

DRY = ("--vars", "{dbt_llm_dry_run: true}")
NEW = [f"{i},new refund request number {i}" for i in range(10, 16)]  # 6 texts no model has answered


def estimates(project: DbtProject) -> dict[str, tuple[int, int, int, float]]:
    rows = project.query(
        "select model, est_requests, est_prompt_tokens, est_completion_tokens, est_cost_usd from dbt_llm.llm_audit "
        "where status = 'dry_run' and invocation_id = "
        "(select invocation_id from dbt_llm.llm_audit order by started_at desc limit 1)"
    )
    return {str(r[0]): (int(r[1]), int(r[2]), int(r[3]), float(r[4])) for r in rows}


def test_a_first_dry_run_says_it_prices_every_row(project: DbtProject) -> None:
    cascade = seeded(project)
    model(cascade, "m", classify())
    log = run_logged(cascade, *DRY)
    assert (
        f"the dry run prices {LARGE} for 100% of the rows asked of {SMALL}: every row, as nothing says otherwise"
    ) in log
    assert {m: e[0] for m, e in estimates(cascade).items()} == {SMALL: 3, LARGE: 3}
    assert cascade.server.requests == []


def test_a_dry_run_after_a_run_prices_the_last_run_s_share(project: DbtProject) -> None:
    cascade = seeded(project)
    model(cascade, "m", classify())
    run_logged(cascade)  # 3 texts asked of the small model, 1 of them escalated
    cascade.write("seeds/t.csv", SEED + "\n".join(NEW) + "\n")
    cascade.dbt("seed")
    cascade.server.reset()
    log = run_logged(cascade, *DRY)
    assert cascade.server.requests == []
    assert (
        f"the dry run prices {LARGE} for 33% of the rows asked of {SMALL}: the share escalated in the last run of "
        f"this cascade (1 of the 3 text(s) asked of {SMALL} went to {LARGE}"
    ) in log
    est = estimates(cascade)
    assert est[SMALL][0] == 6 and est[LARGE][0] == 2  # the 6 new texts, a third of them for the large model
    # A third of what the large model would cost for all 6: its tokens, and its price (10x+ the small's).
    assert est[LARGE][1:3] == (round(est[SMALL][1] / 3), round(est[SMALL][2] / 3))
    assert est[LARGE][3] == pytest.approx((est[SMALL][1] * 2.50 + est[SMALL][2] * 10.00) / 3 / 1e6)
    tokens = est[LARGE][1] + est[LARGE][2]
    assert f"llm_classify ({LARGE}): 2 request(s), ~{tokens} tokens, ~${est[LARGE][3]:.4f}" in log


def test_an_auto_dry_run_with_no_run_of_its_own_prices_the_cached_golden_share(project: DbtProject) -> None:
    project = project_with_cascade(project)
    # Another model with the same cascade and golden set, over no row: it caches both models' golden answers.
    write_model(project)
    project.write("models/other.sql", project.root.joinpath("models/m.sql").read_text() + " where false\n")
    project.dbt("run", "--select", "other")
    project.server.reset()
    log = run_logged(project, *DRY)
    assert project.server.requests == []
    # m has no threshold of its own yet (1.0): 4 of the 5 golden inputs are below it.
    assert (
        f"the dry run prices {LARGE} for 80% of the rows asked of {SMALL}: the share of golden inputs below the "
        "threshold (4 of the 5 cached)"
    ) in log
    est = estimates(project)
    assert est[SMALL][0] == 4 and est[LARGE][0] == 3  # the 4 rows; 80% of them for the large model
