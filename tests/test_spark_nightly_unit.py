"""Batch mode, dry runs and budgets on Spark without a JVM: the functions the pre-hook and the UDFs call
(spark/nightly.py, worker.py, jobs.py, ledger.py), run as plain Python against the fake OpenAI server,
with the staging directory on disk and budgets shared by real processes."""

from __future__ import annotations

import json
import multiprocessing
import sys
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import API_KEY
from openai_server import FakeOpenAI
from test_spark_worker import _keys, _payload

from dbt_llm.spark import nightly, planning, worker
from dbt_llm.spark.jobs import JobFiles, jobs_dir, read_jobs
from dbt_llm.spark.ledger import LedgerBudget
from dbt_llm.spark.staging import staged_lines

TEXTS = [f"ticket {i} about billing" for i in range(6)] * 2  # 6 distinct texts, each twice


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DBT_LLM_TEST_KEY", API_KEY)
    monkeypatch.setattr(worker, "_WORKER", worker._Worker())  # a fresh worker process
    with FakeOpenAI(api_key=API_KEY, batch_delay=0.0) as fake:
        yield fake


def _prepare(server: FakeOpenAI, root: Path, **changes: Any) -> dict[str, Any]:
    config = changes.pop("config", {})
    payload = json.loads(_payload(server, **changes))
    payload["config"].update(batch_poll_interval=0.01, prices={"gpt-4o-mini": {"input": 0.15, "output": 0.60}})
    payload["config"].update(config)
    call: dict[str, Any] = json.loads(planning.prepare(json.dumps(payload), str(root)))
    assert "error" not in call, call
    return call


def _pre_hook(call: dict[str, Any], root: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """What _llm_before does: the pass over the model's rows with the call renamed, then submit and collect."""
    plan = json.loads(
        nightly.before(json.dumps({"invocation_id": call["invocation_id"], "node_id": "model.p.m"}), str(root))
    )
    assert plan["handles"] == [call["handle"]]
    keys = _keys(call["spec_hash"], list(TEXTS))
    renamed = [plan["prefix"] + call["handle"]] * len(TEXTS)
    assert worker.answer_batch(str(root), renamed, keys, list(TEXTS), [None] * len(TEXTS)) == [None] * len(TEXTS)
    calls = json.dumps({"handles": plan["handles"]})
    return json.loads(nightly.submit(calls, str(root))), json.loads(nightly.collect(calls, str(root)))


def test_batch_mode_sends_one_job_at_half_price_and_the_statement_sends_nothing(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    call = _prepare(server, tmp_path, mode="batch", invocation_id="inv-1")
    call["invocation_id"] = "inv-1"
    sent, collected = _pre_hook(call, tmp_path)
    assert len(server.batches) == 1 and len(server.batches[0].custom_ids) == 6 and server.requests == []
    assert "1 batch job(s) sent" in sent["messages"][0] and sent["statements"]  # recorded before the wait
    assert collected["error"] is None and collected["collected"] == [server.batches[0].id]
    answers = [line for line in staged_lines(Path(call["staging"])) if line["kind"] == "answer"]
    billed = server.batch_requests
    assert len(answers) == 6 and all(line["batch_answers"] == 1 for line in answers)
    prompt, completion = sum(r.prompt_tokens for r in billed), sum(r.completion_tokens for r in billed)
    assert sum(line["cost_usd"] for line in answers) == pytest.approx((prompt * 0.15 + completion * 0.60) / 2e6)

    keys = _keys(call["spec_hash"], list(TEXTS))
    worker._WORKER = worker._Worker()  # the statement may run in another worker process
    results = worker.answer_batch(str(tmp_path), [call["handle"]] * 12, keys, list(TEXTS), [None] * 12)
    assert all(result is not None for result in results) and server.requests == []
    tally = next(line for line in staged_lines(Path(call["staging"])) if line["kind"] == "tally")
    assert (tally["rows"], tally["hits"]) == (12, 6)  # the rows each text's job line answered are no hits


def test_a_job_left_by_a_killed_run_is_collected_by_the_next_and_none_is_created(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    server.batch_delay = 3600.0
    first = _prepare(server, tmp_path, mode="batch", config={"batch_timeout": 1}, invocation_id="inv-1")
    first["invocation_id"] = "inv-1"
    _, collected = _pre_hook(first, tmp_path)
    job = server.batches[0].id
    assert job in collected["error"] and "the next run collects them" in collected["error"]  # batch_timeout
    assert collected["collected"] == [] and [lines[0]["job_id"] for lines in read_jobs(jobs_dir(tmp_path))] == [job]

    server.clock = lambda: __import__("time").time() + 7200  # the job has ended
    worker._WORKER = worker._Worker()
    second = _prepare(server, tmp_path, mode="batch", invocation_id="inv-2")
    second["invocation_id"] = "inv-2"
    sent, collected = _pre_hook(second, tmp_path)
    assert len(server.batches) == 1 and server.requests == []
    assert (
        "0 batch job(s) sent" in sent["messages"][0] and "6 text(s) in jobs an earlier run left" in sent["messages"][0]
    )
    assert collected["error"] is None and collected["collected"] == [job]
    assert len([line for line in staged_lines(Path(second["staging"])) if line["kind"] == "answer"]) == 6
    assert JobFiles(tmp_path, "dbt_llm").open_jobs(set(_keys(second["spec_hash"], TEXTS)), "openai") == []  # type: ignore[arg-type]


def test_a_dry_run_prices_every_uncached_text_and_sends_nothing(server: FakeOpenAI, tmp_path: Path) -> None:
    call = _prepare(server, tmp_path, dry_run=True, invocation_id="inv-1")
    call["invocation_id"] = "inv-1"
    sent, collected = _pre_hook(call, tmp_path)
    (estimate,) = [line for line in staged_lines(Path(call["staging"])) if line["kind"] == "estimate"]
    assert estimate["est_requests"] == 6 and estimate["est_prompt_tokens"] > 0
    assert "dry run: model.p.m: llm_classify (gpt-4o-mini): 6 request(s)" in sent["messages"][0]
    keys = _keys(call["spec_hash"], list(TEXTS))
    assert worker.answer_batch(str(tmp_path), [call["handle"]] * 12, keys, list(TEXTS), [None] * 12) == [None] * 12
    assert server.requests == [] and server.batches == [] and collected["error"] is None


def test_a_cap_stops_the_requests_and_the_post_hook_says_budget(server: FakeOpenAI, tmp_path: Path) -> None:
    call = _prepare(server, tmp_path, max_cost_usd=0.00003, invocation_id="inv-1")  # about two requests
    texts = [f"ticket {i}" for i in range(20)]
    worker.answer_batch(str(tmp_path), [call["handle"]] * 20, _keys(call["spec_hash"], texts), texts, [None] * 20)
    lines = list(staged_lines(Path(call["staging"])))
    answered = [line for line in lines if line["kind"] == "answer"]
    assert 0 < len(answered) == len(server.requests) < 20
    assert sum(line["cost_usd"] for line in answered) <= 0.00003
    assert len([line for line in lines if line["kind"] == "budget"]) == 20 - len(answered)
    finish = json.loads(planning.finish(json.dumps({"invocation_id": "inv-1", "node_id": "model.p.m"}), str(tmp_path)))
    assert "budget reached in model.p.m: this invocation spent $" in finish["budget_message"]


COST = 2**-7  # exact in binary: the count is exact


def _spend(path: str, results: Any) -> None:
    budget, spent = LedgerBudget(0.5, Path(path)), 0
    while budget.reserve(COST) == "reserved":
        budget.settle(COST, COST)
        spent += 1
    results.put(spent)


def test_a_ledger_holds_one_cap_across_processes(tmp_path: Path) -> None:
    results: Any = multiprocessing.Queue()
    path = str(tmp_path / "ledger.json")
    processes = [multiprocessing.Process(target=_spend, args=(path, results)) for _ in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join()
    assert sum(results.get() for _ in processes) == 64  # 0.5 / COST, never more whichever process asked
    assert LedgerBudget(0.5, Path(path)).spent_usd == 0.5
