"""Rows packed per request, end to end: real dbt runs against the local OpenAI server."""

from __future__ import annotations

import math

import pytest
from conftest import DbtProject

LABELS = [f"topic_{i:02d}" for i in range(30)]
DISTINCT = 96
ROWS = 200  # every text appears twice or more


def seed(project: DbtProject, distinct: int = DISTINCT, rows: int = ROWS) -> None:
    body = "".join(f"{i},customer {i % distinct} writes about order number {i % distinct}\n" for i in range(rows))
    project.write("seeds/t.csv", "id,body\n" + body)
    project.write(
        "models/m.sql",
        "select id, {{ dbt_llm.llm_classify('body', " + str(LABELS) + ", rows_per_request=var('k', none)) }} as l "
        "from {{ ref('t') }}\n",
    )
    project.dbt("seed")


def audit(project: DbtProject) -> tuple[int, int, int, float, int]:
    row = project.query(
        "select sum(api_calls), sum(prompt_tokens), sum(completion_tokens), max(rows_per_call), sum(failed_rows) "
        "from dbt_llm.llm_audit where command = 'run'"
    )[0]
    return row  # type: ignore[return-value]


def test_packed_rows_cost_a_third_of_the_prompt_tokens_and_share_the_cache(project: DbtProject) -> None:
    seed(project)
    project.dbt("run", "--vars", "{k: 1}")
    alone = project.server.requests
    assert len(alone) == DISTINCT
    unpacked = project.query("select key, result from dbt_llm.llm_cache order by key")

    project.execute("delete from dbt_llm.llm_cache; delete from dbt_llm.llm_audit")
    project.server.reset()
    project.dbt("run", "--vars", "{k: 16}")
    packed = project.server.requests
    ideal = math.ceil(DISTINCT / 16)
    assert ideal <= len(packed) <= ideal + 2, [len(r.texts) for r in packed]
    assert sum(len(r.texts) for r in packed) == DISTINCT  # each text sent once
    # The fixed prompt is paid once per request: prompt tokens per row fall at least 3x.
    per_row_alone = sum(r.prompt_tokens for r in alone) / DISTINCT
    per_row_packed = sum(r.prompt_tokens for r in packed) / DISTINCT
    assert per_row_alone / per_row_packed >= 3, (per_row_alone, per_row_packed)
    # Every row cached under its own key, with the answer an unpacked request got.
    assert project.query("select key, result from dbt_llm.llm_cache order by key") == unpacked
    assert project.query("select count(*) from m where l is null") == [(0,)]
    calls, prompt, completion, rows_per_call, failed = audit(project)
    assert calls == len(packed) and failed == 0
    assert prompt == sum(r.prompt_tokens for r in packed)  # the audit's tokens are what the server billed
    assert completion == sum(r.completion_tokens for r in packed)
    assert rows_per_call == pytest.approx(DISTINCT / len(packed), abs=0.01)

    project.server.reset()
    project.dbt("run", "--vars", "{k: 16}")
    assert project.server.requests == []  # a rerun sends nothing


def test_invalid_rows_and_server_errors_end_valid_in_one_run(project: DbtProject) -> None:
    distinct = 320
    seed(project, distinct=distinct, rows=distinct)
    project.plugin_config["max_attempts"] = 5
    project.server.set_fault_rates({"invalid": 0.05, "500": 0.02}, seed=2)
    project.server.inject("500")  # at least one pack is split
    project.dbt("run", "--vars", "{k: 16}")
    sent = project.server.requests
    broken = sum(len(r.invalid_ids) for r in sent)
    assert broken >= 5  # the faults happened
    assert project.query("select count(*) from m where l is not null") == [(distinct,)]
    assert project.query("select count(*) from dbt_llm.llm_cache") == [(distinct,)]
    assert project.query("select count(*) from dbt_llm.llm_errors") == [(0,)]
    ideal = distinct / 16
    # Invalid rows of different packs are sent again together: 28 to 30 requests here (20 packs, 3 of
    # them split by a 500), where sending each row alone would take ~340.
    assert len(sent) <= 1.75 * ideal, f"{len(sent)} requests for {distinct} rows, {broken} invalid answers"
    calls, prompt, completion, _, failed = audit(project)
    assert failed == 0 and calls == len(sent)
    assert prompt == sum(r.prompt_tokens for r in sent if r.status == 200)
    assert completion == sum(r.completion_tokens for r in sent if r.status == 200)


def test_a_failed_pack_is_split_in_halves(project: DbtProject) -> None:
    seed(project, distinct=16, rows=16)
    project.plugin_config["max_concurrency"] = 1
    project.server.inject("500")
    project.dbt("run", "--vars", "{k: 16}")
    sizes = [len(r.texts) for r in project.server.requests]
    assert sizes == [16, 8, 8]
    assert project.query("select count(*) from m where l is not null") == [(16,)]
    calls, *_ = audit(project)
    retries = project.query("select sum(retries) from dbt_llm.llm_audit")[0][0]
    assert calls == 3 and retries == 2


def test_long_texts_make_smaller_packs(project: DbtProject) -> None:
    project.plugin_config["max_input_chars"] = 1000
    long_text = "x" * 390
    body = "".join(f"{i},{long_text} {i}\n" for i in range(6))
    project.write("seeds/t.csv", "id,body\n" + body)
    project.write(
        "models/m.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['a', 'b'], rows_per_request=16) }} as l from {{ ref('t') }}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    sizes = sorted(len(r.texts) for r in project.server.requests)
    assert sizes == [2, 2, 2]  # three texts of ~393 characters would pass max_input_chars=1000


def test_dry_run_prices_packed_requests(project: DbtProject) -> None:
    seed(project)
    project.dbt("run", "--vars", "{k: 16, dbt_llm_dry_run: true}")
    assert project.server.requests == []
    est_requests, est_prompt = project.query(
        "select est_requests, est_prompt_tokens from dbt_llm.llm_audit where status = 'dry_run'"
    )[0]
    assert est_requests == math.ceil(DISTINCT / 16)
    project.dbt("run", "--vars", "{k: 16}")
    billed = sum(r.prompt_tokens for r in project.server.requests)
    assert 0.8 <= est_prompt / billed <= 1.25, (est_prompt, billed)


def test_rows_per_request_out_of_range_fails_at_compile_time(project: DbtProject) -> None:
    seed(project)
    result = project.dbt("run", "--vars", "{k: 0}", ok=False)
    assert "rows_per_request" in str(result.result) + str(result.exception)
    assert project.server.requests == []


BATCH = "{k: 16, dbt_llm_mode: batch}"


def test_batch_lines_carry_packs_and_a_later_run_collects_them(project: DbtProject) -> None:
    project.plugin_config.update(batch_poll_interval=0.05, batch_timeout=1.0)
    seed(project)
    server = project.server
    server.batch_delay = 4.0
    server.inject_batch_line("invalid", match="customer 5 writes")  # one row of one packed line
    project.dbt("run", "--vars", BATCH, ok=False)  # stops waiting: the job is recorded, not lost
    [job] = server.batches
    assert len(job.custom_ids) == math.ceil(DISTINCT / 16)
    packed_keys = project.query("select count(*) from dbt_llm.llm_batch_job_keys where custom_id is not null")
    assert packed_keys == [(DISTINCT,)]

    project.plugin_config["batch_timeout"] = 60.0
    project.dbt("run", "--vars", BATCH)
    assert [b.id for b in server.batches] == [job.id]  # collected by the next run, not sent again
    # The invalid row alone is sent again, realtime (batch_fallback: realtime); the others are answered.
    assert [r.texts for r in server.requests] == [("customer 5 writes about order number 5",)]
    assert project.query("select count(*), count(l) from m") == [(ROWS, ROWS)]
    assert project.query("select count(*) from dbt_llm.llm_cache") == [(DISTINCT,)]
    calls, prompt, completion, _, failed = audit(project)
    billed = [*server.batch_requests, *server.requests]
    assert failed == 0 and calls == len(billed)
    assert (prompt, completion) == (sum(r.prompt_tokens for r in billed), sum(r.completion_tokens for r in billed))
    answers, cost = project.query("select sum(batch_answers), sum(cost_usd) from dbt_llm.llm_audit")[0]
    assert answers == DISTINCT - 1
    batch_cost = sum(r.prompt_tokens * 0.15 + r.completion_tokens * 0.60 for r in server.batch_requests) / 2e6
    realtime_cost = sum(r.prompt_tokens * 0.15 + r.completion_tokens * 0.60 for r in server.requests) / 1e6
    assert cost == pytest.approx(batch_cost + realtime_cost)
    # Saved: the batch lines' half, every line billed (the invalid one too); the realtime resend saved nothing.
    assert project.query("select sum(batch_saved_usd) from dbt_llm.llm_audit")[0][0] == pytest.approx(batch_cost)
