"""A cascade in batch mode, in real dbt runs against the fake server's Batch API: two stages, the first
model's uncached texts in one job, then the texts below the threshold (those its job answered so, and
those whose cached first answer was) in a second job of escalate_to; the column is what realtime gives."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DbtProject
from test_cascade import FAIRLY, LARGE, SMALL, UNSURE, classify, model, values

BATCH = ("--vars", "{dbt_llm_mode: batch}")
SEED = """id,body
1,billing question sure
2,shipping question unsure
3,billing issue fairly sure
4,
5,shipping question unsure
6,billing refund unsure
"""
STAGE_1 = ["billing issue fairly sure", "billing question sure", "billing refund unsure", "shipping question unsure"]
BELOW = ["billing refund unsure", "shipping question unsure"]  # confidence 0.33 and 0.67, under 0.8
PRICE = {SMALL: (0.15, 0.60), LARGE: (2.50, 10.00)}  # USD per 1M tokens, list price


def seeded(project: DbtProject, *, seed: bool = True) -> DbtProject:
    project.plugin_config.update(batch_poll_interval=0.05)
    project.write("seeds/t.csv", SEED)
    if seed:
        project.dbt("seed")
    return answering(project)


def answering(project: DbtProject) -> DbtProject:
    """The server's rules (server.reset() forgets them): the small model unsure of some texts, the
    large model answering those otherwise."""
    project.server.set_logprobs("unsure", UNSURE, model=SMALL)
    project.server.set_logprobs("fairly", FAIRLY, model=SMALL)
    project.server.change_answers("unsure", model=LARGE)
    return project


def jobs(project: DbtProject) -> list[tuple[str, list[str], list[str]]]:
    """Each batch job in order: the model and the texts of its lines, and its custom_ids."""
    by_batch: dict[str, list[tuple[str, str, str]]] = {}
    for line in project.server.batch_requests:
        assert line.batch_id is not None and line.custom_id is not None
        by_batch.setdefault(line.batch_id, []).append((line.model, line.text, line.custom_id))
    made = []
    for batch in project.server.batches:
        lines = by_batch.get(batch.id, [])
        assert len(lines) == len(batch.custom_ids)
        assert sorted(c for _, _, c in lines) == sorted(batch.custom_ids)
        models = ",".join(sorted({m for m, _, _ in lines}))
        made.append((models, sorted(t for _, t, _ in lines), sorted(batch.custom_ids)))
    return made


def cache_keys(project: DbtProject, of: str) -> list[str]:
    return sorted(r[0] for r in project.query("select key from dbt_llm.llm_cache where model = ?", [of]))


def test_batch_mode_sends_the_escalated_rows_as_a_second_job(project: DbtProject) -> None:
    cascade = seeded(project)
    model(cascade, "m", classify())
    cascade.dbt("run", *BATCH)
    assert cascade.server.requests == []  # nothing realtime
    made = jobs(cascade)
    assert [(m, texts) for m, texts, _ in made] == [(SMALL, STAGE_1), (LARGE, BELOW)]
    # Each line's custom_id is the cache key its answer is stored under, as a plain call of the model makes.
    assert made[0][2] == cache_keys(cascade, SMALL) and made[1][2] == cache_keys(cascade, LARGE)
    recorded = cascade.query(
        "select job_id, model, requests, collected_at is not null from dbt_llm.llm_batch_jobs order by created_at"
    )
    assert recorded == [
        (b.id, m, n, True) for b, m, n in zip(cascade.server.batches, (SMALL, LARGE), (4, 2), strict=True)
    ]
    batch = values(cascade)

    # Each model's audit row: its rows, its batch answers, at half its list price.
    audit = cascade.query(
        "select model, rows, batch_answers, prompt_tokens, completion_tokens, cost_usd from dbt_llm.llm_audit"
    )
    assert {r[0]: r[1:3] for r in audit} == {SMALL: (5, 4), LARGE: (3, 2)}
    for name, _, _, prompt, completion, cost in audit:
        billed = [r for r in cascade.server.batch_requests if r.model == name]
        assert (prompt, completion) == (sum(r.prompt_tokens for r in billed), sum(r.completion_tokens for r in billed))
        assert cost == pytest.approx((prompt * PRICE[name][0] + completion * PRICE[name][1]) / 2 / 1e6)

    cascade.server.reset()  # a rerun: every answer is cached, no job is created
    cascade.dbt("run", *BATCH)
    assert cascade.server.batches == [] and cascade.server.requests == []
    assert values(cascade) == batch

    cascade.execute("delete from dbt_llm.llm_cache")  # realtime, from nothing, gives the same column
    answering(cascade)
    cascade.dbt("run")
    assert sorted(r.text for r in cascade.server.requests if r.model == LARGE) == BELOW
    assert values(cascade) == batch and batch[1] not in (None, "shipping") and batch[0] == "billing"


def test_the_second_job_holds_the_rows_whose_cached_first_answer_is_below_too(project: DbtProject) -> None:
    cascade = seeded(project)
    plain = f"select id, {classify(cascade=False)} as v from {{{{ ref('t') }}}} where id <= 2\n"
    project.write("models/plain.sql", plain)
    cascade.dbt("run", "--select", "plain")  # the small model's answers of rows 1 and 2, cached realtime
    cascade.server.reset()
    answering(cascade)
    model(cascade, "m", classify())
    cascade.dbt("run", "--select", "m", *BATCH)
    made = jobs(cascade)
    assert [(m, texts) for m, texts, _ in made] == [
        (SMALL, ["billing issue fairly sure", "billing refund unsure"]),
        (LARGE, BELOW),  # row 2 from the cache, row 6 from the first job
    ]
    assert cascade.server.requests == []
    got = values(cascade)
    assert got[1] == got[4] and got[1] not in (None, "shipping") and got[5] not in (None, "billing")


def test_a_run_killed_in_the_second_stage_is_collected_by_the_next(project: DbtProject) -> None:
    cascade = seeded(project, seed=False)
    cascade.server.batch_delay = 3.0
    model(cascade, "m", classify())
    cascade.write_profiles()
    # In processes of their own: an in-process dbt run keeps the DuckDB file locked.
    dbt = [str(Path(sys.executable).with_name("dbt"))]
    where = ["--project-dir", str(cascade.root), "--profiles-dir", str(cascade.root)]
    subprocess.run([*dbt, "seed", *where], check=True, capture_output=True)
    proc = subprocess.Popen([*dbt, "run", *BATCH, *where], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, deadline = cascade.root / "logs" / "dbt.log", time.monotonic() + 60
    # Kill it once the second job is recorded: its log says so after "second batch job".
    while time.monotonic() < deadline and not (
        log.exists() and "recorded in llm_batch_jobs" in log.read_text().partition("in a second batch job")[2]
    ):
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(cascade.server.batches) == 2
    assert cascade.query("select model, collected_at is null from dbt_llm.llm_batch_jobs order by created_at") == [
        (SMALL, False),
        (LARGE, True),
    ]

    cascade.dbt("run", *BATCH)
    assert len(cascade.server.batches) == 2 and cascade.server.requests == []  # collected, not sent again
    assert [(m, texts) for m, texts, _ in jobs(cascade)] == [(SMALL, STAGE_1), (LARGE, BELOW)]
    got = values(cascade)
    assert got[1] not in (None, "shipping") and got[0] == got[2] == "billing" and got[3] is None
