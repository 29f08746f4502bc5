"""What Spark's Python workers do, without a JVM: plan a call, answer batches of rows against the
fake OpenAI server, stage every answer, and find staged answers again in a new process."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from conftest import API_KEY
from openai_server import FakeOpenAI

from dbt_llm.errors import RowFailuresError
from dbt_llm.functions.tasks import cache_key
from dbt_llm.spark import planning, worker
from dbt_llm.spark.sql_types import spark_type
from dbt_llm.spark.staging import (
    LineWriter,
    NodeDir,
    acquire_merge_lock,
    discard,
    node_dirs,
    release_merge_lock,
    staged_lines,
)


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("DBT_LLM_TEST_KEY", API_KEY)
    monkeypatch.setattr(worker, "_WORKER", worker._Worker())  # a fresh worker process
    with FakeOpenAI(api_key=API_KEY) as fake:
        yield fake


def _payload(server: FakeOpenAI, **changes: Any) -> str:
    config = {"base_url": server.base_url, "api_key_env": "DBT_LLM_TEST_KEY", "model": "gpt-4o-mini"}
    payload: dict[str, Any] = {
        "function": "classify",
        "where": "llm_classify(body) in model.p.m",
        "invocation_id": "inv-1",
        "node_id": "model.p.m",
        "command": "run",
        "hooked": True,  # as the macro _llm_hooked_commands says of `run`
        "batch_id": "",
        "labels": ["billing", "bug"],
        "config": config,
    }
    for key, value in changes.items():
        if key in ("provider", "mode", "max_cost_usd", "nonsense", "on_error"):
            config[key] = value
        else:
            payload[key] = value
    return json.dumps(payload)


def _keys(spec_hash: str, texts: list[str | None]) -> list[str | None]:
    return [None if t is None else cache_key(spec_hash, t) for t in texts]


def test_a_batch_sends_each_distinct_uncached_text_once_and_stages_it(server: FakeOpenAI, tmp_path: Path) -> None:
    call = json.loads(planning.prepare(_payload(server), str(tmp_path)))
    assert "error" not in call and call["type"] == "struct<`label`: string>"
    texts = ["a billing question", "a bug report", "a billing question", None, "cached one", "a bug report"]
    keys = _keys(call["spec_hash"], texts)
    cached = [None, None, None, None, '{"label":"bug"}', None]

    results = worker.answer_batch(str(tmp_path), [call["handle"]] * 6, keys, texts, cached)

    assert sorted(r.text for r in server.requests) == ["a billing question", "a bug report"]
    assert [json.loads(r)["label"] if r else None for r in results] == ["billing", "bug", "billing", None, "bug", "bug"]
    lines = list(staged_lines(Path(call["staging"])))
    answers = [line for line in lines if line["kind"] == "answer"]
    assert {line["key"] for line in answers} == {keys[0], keys[1]}
    assert sum(line["prompt_tokens"] for line in answers) == sum(r.prompt_tokens for r in server.requests)
    tally = next(line for line in lines if line["kind"] == "tally")
    # 5 rows with text: 1 from the cache, 2 reusing an answer of this batch, 2 sent.
    assert (tally["rows"], tally["hits"], tally["failed"]) == (5, 3, 0)

    # The next batch of the same process reuses the answers; a new process finds them staged.
    worker.answer_batch(str(tmp_path), [call["handle"]], [keys[0]], [texts[0]], [None])
    worker._WORKER = worker._Worker()
    again = worker.answer_batch(str(tmp_path), [call["handle"]], [keys[1]], [texts[1]], [None])
    assert len(server.requests) == 2
    assert again == [results[1]]


def test_a_row_without_a_valid_answer_is_staged_as_an_error_and_counted(server: FakeOpenAI, tmp_path: Path) -> None:
    call = json.loads(planning.prepare(_payload(server), str(tmp_path)))
    server.inject("invalid", times=5, match="broken")
    texts = ["broken text", "broken text", "a bug report"]
    results = worker.answer_batch(
        str(tmp_path), [call["handle"]] * 3, _keys(call["spec_hash"], texts), texts, [None] * 3
    )
    assert results[:2] == [None, None] and results[2] is not None
    lines = list(staged_lines(Path(call["staging"])))
    errors = [line for line in lines if line["kind"] == "error"]
    assert [(e["error_kind"], e["attempts"], e["input_preview"]) for e in errors] == [
        ("invalid_answer", 5, "broken text")
    ]
    assert next(line for line in lines if line["kind"] == "tally")["failed"] == 2
    assert not any(line["kind"] == "answer" and line["key"] == errors[0]["key"] for line in lines)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"provider": "local"}, "the dbt var `dbt_llm`: `provider: local` is not available on Spark"),
        ({"nonsense": 1}, "the dbt var `dbt_llm`: `nonsense` is not a known key"),
        ({"dry_run": True, "compare": 10}, "compares are not available on Spark yet"),
        ({"recheck": 20}, "rechecks are not available on Spark yet; run without `dbt_llm_recheck`"),
        ({"labels": []}, "llm_classify(body) in model.p.m"),
    ],
)
def test_prepare_refuses_what_spark_cannot_do_naming_the_key(
    server: FakeOpenAI, tmp_path: Path, change: dict[str, Any], message: str
) -> None:
    answer = json.loads(planning.prepare(_payload(server, **change), str(tmp_path)))
    assert message in answer["error"]
    assert API_KEY not in answer["error"]


def test_staged_lines_skip_a_torn_last_line_and_discard_removes_the_node(tmp_path: Path) -> None:
    node = NodeDir(tmp_path, "dbt_llm", "inv-1", "model.p.m")
    writer = LineWriter(node.path)
    writer.write({"kind": "answer", "key": "k1"})
    writer.close()
    with open(next(node.path.glob("*.jsonl")), "a") as torn:
        torn.write('{"kind": "answer", "key": "k2", "resu')  # the writer was killed mid-line
    assert [line["key"] for line in staged_lines(node.path)] == ["k1"]
    assert list(node_dirs(tmp_path)) == [node]
    discard(node.path)
    assert list(node_dirs(tmp_path)) == []


def test_merge_lock_waits_for_its_holder_and_takes_over_a_stale_one(tmp_path: Path) -> None:
    acquire_merge_lock(tmp_path, "run-1 model.a")
    release_merge_lock(tmp_path, "someone else")  # not the holder: nothing happens
    assert (tmp_path / "merge.lock").read_text() == "run-1 model.a"
    old = time.time() - 600
    os.utime(tmp_path / "merge.lock", (old, old))  # left by a merge that failed midway
    acquire_merge_lock(tmp_path, "run-2 model.b", stale_after=120)
    assert (tmp_path / "merge.lock").read_text() == "run-2 model.b"
    release_merge_lock(tmp_path, "run-2 model.b")
    assert not (tmp_path / "merge.lock").exists()


def test_spark_types_of_answers() -> None:
    schema = {
        "type": "object",
        "properties": {
            "city": {"type": ["string", "null"]},
            "founded": {"type": ["string", "null"], "format": "date"},
            "n": {"type": "integer"},
            "score": {"type": "number"},
            "tags": {"type": "array", "items": {"type": "string"}},
            "odd`name": {"type": "boolean"},
        },
    }
    assert spark_type(schema) == (
        "struct<`city`: string, `founded`: date, `n`: bigint, `score`: double, `tags`: array<string>, "
        "`odd``name`: boolean>"
    )


def test_rows_per_request_packs_a_batch_s_texts(server: FakeOpenAI, tmp_path: Path) -> None:
    call = json.loads(planning.prepare(_payload(server, rows_per_request=4), str(tmp_path)))
    texts = [f"a billing question {i}" for i in range(8)]
    results = worker.answer_batch(
        str(tmp_path), [call["handle"]] * 8, _keys(call["spec_hash"], texts), texts, [None] * 8
    )
    assert [len(r.ids) for r in server.requests] == [4, 4]
    assert all(json.loads(r or "{}").get("label") == "billing" for r in results)


def test_a_preview_sends_at_most_its_limit_and_skips_the_rest(server: FakeOpenAI, tmp_path: Path) -> None:
    """Spark runs a whole partition through the UDF even under a LIMIT: `dbt show --limit 2` pays for 2."""
    call = json.loads(planning.prepare(_payload(server, command="show", hooked=False, preview_limit=2), str(tmp_path)))
    texts = [f"a bug report {i}" for i in range(5)]
    results = worker.answer_batch(
        str(tmp_path), [call["handle"]] * 5, _keys(call["spec_hash"], texts), texts, [None] * 5
    )
    assert len(server.requests) == 2
    assert sum(r is not None for r in results) == 2
    tally = next(line for line in staged_lines(Path(call["staging"])) if line["kind"] == "tally")
    assert (tally["rows"], tally["failed"], tally["skipped"]) == (5, 0, 3)


def test_an_incremental_model_fails_its_batch_on_a_failed_row_and_a_retry_pays_nothing_again(
    server: FakeOpenAI, tmp_path: Path
) -> None:
    """No rollback on Spark: the batch fails, so the insert appends nothing; the task Spark retries (here
    in a new process) finds the failure and the paid answers staged, and sends nothing again."""
    call = json.loads(planning.prepare(_payload(server, materialized="incremental"), str(tmp_path)))
    server.inject("invalid", times=5, match="broken")
    texts = ["broken text", "a bug report"]
    keys = _keys(call["spec_hash"], texts)
    with pytest.raises(RowFailuresError, match=r"1 row\(s\) of model.p.m got no valid answer.*Nothing was appended"):
        worker.answer_batch(str(tmp_path), [call["handle"]] * 2, keys, texts, [None] * 2)
    assert len(server.requests) == 6  # 5 invalid answers, 1 valid
    worker._WORKER = worker._Worker()
    with pytest.raises(RowFailuresError):
        worker.answer_batch(str(tmp_path), [call["handle"]] * 2, keys, texts, [None] * 2)
    assert len(server.requests) == 6
    tallies = [line for line in staged_lines(Path(call["staging"])) if line["kind"] == "tally"]
    assert len(tallies) == 2 and tallies[0]["batch"] == tallies[1]["batch"]  # the merge counts it once
