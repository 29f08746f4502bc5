"""The Batch API of the fake OpenAI server: files, batches, their statuses, faults and the prefix cache."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai_server import FakeOpenAI, is_valid

SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative", "neutral"]}},
    "required": ["label"],
    "additionalProperties": False,
}
T0 = 1_000_000.0
LONG_SYSTEM = "x" * 4400  # 1100 tokens: cached as 1024
SERVER = str(Path(__file__).parent / "openai_server.py")


class Clock:
    """A clock the test moves by hand, so every status is reached without sleeping."""

    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def _body(text: str, *, system: str = "You label things.", model: str = "gpt-test") -> dict[str, Any]:
    return {
        "model": model,
        "messages": [{"role": "system", "content": system}, {"role": "user", "content": f"<input>\n{text}\n</input>"}],
        "response_format": {"type": "json_schema", "json_schema": {"name": "answer", "strict": True, "schema": SCHEMA}},
    }


def _line(custom_id: str, text: str, **kwargs: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": _body(text, **kwargs)}


def _jsonl(lines: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(line) + "\n" for line in lines).encode()


def _rows(n: int) -> list[dict[str, Any]]:
    return [_line(f"row-{i}", f"item {i} is {('positive', 'negative', 'neutral')[i % 3]}") for i in range(n)]


def _upload(client: httpx.Client, content: bytes, filename: str = "in.jsonl") -> httpx.Response:
    return client.post("/files", data={"purpose": "batch"}, files={"file": (filename, content, "application/jsonl")})


def _create(client: httpx.Client, lines: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    uploaded = _upload(client, _jsonl(lines))
    assert uploaded.status_code == 200, uploaded.text
    body = {"input_file_id": uploaded.json()["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    created = client.post("/batches", json={**body, **extra})
    assert created.status_code == 200, created.text
    batch: dict[str, Any] = created.json()
    return batch


def _get(client: httpx.Client, batch_id: str) -> dict[str, Any]:
    response = client.get(f"/batches/{batch_id}")
    assert response.status_code == 200, response.text
    batch: dict[str, Any] = response.json()
    return batch


def _download(client: httpx.Client, file_id: str | None) -> list[dict[str, Any]]:
    assert file_id is not None
    response = client.get(f"/files/{file_id}/content")
    assert response.status_code == 200, response.text
    return [json.loads(line) for line in response.text.splitlines()]


def _bodies(client: httpx.Client, file_id: str | None) -> dict[str, Any]:
    """custom_id -> the response body of each line of an output file."""
    return {item["custom_id"]: item["response"]["body"] for item in _download(client, file_id)}


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(batch_delay=0) as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=5) as c:
        yield c


@pytest.fixture
def clock(fake: FakeOpenAI) -> Clock:
    fake.clock = Clock()
    return fake.clock


def test_upload_create_poll_and_download() -> None:
    lines = _rows(8)
    content = _jsonl(lines)
    with FakeOpenAI(batch_delay=0.05) as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        uploaded = _upload(client, content).json()
        assert uploaded["id"].startswith("file-") and uploaded["object"] == "file"
        assert (uploaded["bytes"], uploaded["filename"], uploaded["purpose"]) == (len(content), "in.jsonl", "batch")
        assert client.get(f"/files/{uploaded['id']}").json() == uploaded
        assert client.get(f"/files/{uploaded['id']}/content").content == content

        body = {"input_file_id": uploaded["id"], "endpoint": "/v1/chat/completions", "completion_window": "24h"}
        created = client.post("/batches", json={**body, "metadata": {"model": "stg_reviews"}}).json()
        assert created["id"].startswith("batch_") and created["object"] == "batch"
        assert (created["status"], created["input_file_id"], created["endpoint"]) == (
            "validating",
            uploaded["id"],
            "/v1/chat/completions",
        )
        assert created["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
        assert created["metadata"] == {"model": "stg_reviews"}
        assert created["output_file_id"] is None and created["completed_at"] is None

        seen = [created["status"]]
        batch = created
        for _ in range(1000):  # a cap on the polls, not a time limit
            if batch["status"] == "completed":
                break
            time.sleep(0.005)
            batch = _get(client, created["id"])
            if batch["status"] != seen[-1]:
                seen.append(batch["status"])
        order = ["validating", "in_progress", "finalizing", "completed"]
        assert seen[-1] == "completed" and seen == sorted(seen, key=order.index)
        assert batch["request_counts"] == {"total": 8, "completed": 8, "failed": 0}
        assert batch["error_file_id"] is None
        for stamp in ("in_progress_at", "finalizing_at", "completed_at"):
            assert batch[stamp] is not None
        assert batch["expires_at"] == batch["created_at"] + 24 * 3600

        output = _download(client, batch["output_file_id"])
        by_id = {item["custom_id"]: item for item in output}
        assert sorted(by_id) == sorted(line["custom_id"] for line in lines) and len(output) == 8
        for line in lines:
            item = by_id[line["custom_id"]]
            assert item["id"].startswith("batch_req_") and item["error"] is None
            assert item["response"]["status_code"] == 200 and item["response"]["request_id"].startswith("req_")
            realtime = client.post("/chat/completions", json=line["body"]).json()
            answer = item["response"]["body"]
            assert answer["object"] == "chat.completion"
            assert answer["choices"][0]["message"] == realtime["choices"][0]["message"]
            assert answer["usage"] == realtime["usage"]
            assert is_valid(SCHEMA, json.loads(answer["choices"][0]["message"]["content"]))

        recorded = fake.batches
        assert [b.id for b in recorded] == [created["id"]]
        assert recorded[0].custom_ids == tuple(line["custom_id"] for line in lines)
        assert recorded[0].output_custom_ids == tuple(item["custom_id"] for item in output)
        assert recorded[0].output_custom_ids != recorded[0].custom_ids  # shuffled
        assert [f.purpose for f in fake.files] == ["batch", "batch_output"]
        assert fake.files[1].content == client.get(f"/files/{batch['output_file_id']}/content").content
        # Batch lines are recorded apart from the realtime requests, with their usage.
        assert len(fake.requests) == 8 and all(r.batch_id is None for r in fake.requests)
        assert [(r.batch_id, r.custom_id) for r in fake.batch_answered()] == [
            (created["id"], line["custom_id"]) for line in lines
        ]
        assert [r.prompt_tokens for r in fake.batch_requests] == [r.prompt_tokens for r in fake.requests]

        deleted = client.delete(f"/files/{uploaded['id']}")
        assert deleted.json() == {"id": uploaded["id"], "object": "file", "deleted": True}
        assert client.get(f"/files/{uploaded['id']}/content").status_code == 404


def _output_order(seed: int) -> tuple[str, ...]:
    with FakeOpenAI(batch_delay=0) as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        fake.batch_seed = seed
        _get(client, _create(client, _rows(10))["id"])
        return fake.batches[0].output_custom_ids


def test_the_shuffle_is_seeded() -> None:
    first = _output_order(0)
    assert sorted(first) == sorted(f"row-{i}" for i in range(10))
    assert _output_order(0) == first
    assert _output_order(1) != first


def test_statuses_follow_the_clock(fake: FakeOpenAI, client: httpx.Client, clock: Clock) -> None:
    fake.batch_delay = 3.0  # one second for each of validating, in_progress and finalizing
    batch_id = _create(client, _rows(4))["id"]
    steps = [(0.5, "validating", 0), (1.0, "in_progress", 0), (1.5, "in_progress", 2), (2.0, "finalizing", 4)]
    for offset, status, done in steps:
        clock.now = T0 + offset
        batch = _get(client, batch_id)
        assert (batch["status"], batch["request_counts"]["completed"]) == (status, done), offset
        assert batch["output_file_id"] is None
    assert len(fake.batch_requests) == 4
    clock.now = T0 + 7
    batch = _get(client, batch_id)
    assert batch["status"] == "completed"
    assert [batch[k] for k in ("created_at", "in_progress_at", "finalizing_at", "completed_at")] == [
        T0,
        T0 + 1,
        T0 + 2,
        T0 + 3,
    ]
    assert len(_download(client, batch["output_file_id"])) == 4


def test_failed_lines_go_to_the_error_file(fake: FakeOpenAI, client: httpx.Client) -> None:
    fake.inject_batch_line("500", times=2, match="flaky")
    fake.inject("500")  # a realtime fault: batch lines do not take it
    lines = [_line("a", "flaky one"), _line("b", "fine"), _line("c", "flaky two"), _line("d", "flaky three")]
    batch = _get(client, _create(client, lines)["id"])
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 2}
    errors = {item["custom_id"]: item for item in _download(client, batch["error_file_id"])}
    assert sorted(errors) == ["a", "c"]  # the first two that match, in input order
    for item in errors.values():
        assert item["response"]["status_code"] == 500
        assert item["response"]["body"]["error"]["type"] == "server_error"
        assert item["error"]["code"] == "server_error" and item["error"]["message"]
    assert sorted(item["custom_id"] for item in _download(client, batch["output_file_id"])) == ["b", "d"]
    assert sorted((r.custom_id, r.status, r.fault) for r in fake.batch_requests) == [
        ("a", 500, "500"),
        ("b", 200, None),
        ("c", 500, "500"),
        ("d", 200, None),
    ]
    realtime = client.post("/chat/completions", json=_body("anything"))
    assert realtime.status_code == 500


def test_invalid_and_truncated_answers_come_back_as_200(fake: FakeOpenAI, client: httpx.Client) -> None:
    fake.inject_batch_line("invalid", match="weird")
    fake.inject_batch_line("truncated", match="long")
    lines = [_line("w", "weird positive"), _line("l", "long negative"), _line("n", "neutral")]
    batch = _get(client, _create(client, lines)["id"])
    assert batch["request_counts"] == {"total": 3, "completed": 3, "failed": 0} and batch["error_file_id"] is None
    answers = {
        item["custom_id"]: item["response"]["body"]["choices"][0] for item in _download(client, batch["output_file_id"])
    }
    assert json.loads(answers["w"]["message"]["content"]) == {"label": "not-a-label"}
    assert answers["l"]["finish_reason"] == "length"
    assert json.loads(answers["n"]["message"]["content"]) == {"label": "neutral"}
    assert [r.custom_id for r in fake.batch_answered()] == ["n"]


def test_a_batch_past_its_window_expires_with_what_it_answered(
    fake: FakeOpenAI, client: httpx.Client, clock: Clock
) -> None:
    fake.batch_delay = 3.0
    fake.batch_window = 1.5  # half-way through in_progress: two of the four lines are answered
    batch_id = _create(client, _rows(4))["id"]
    clock.now = T0 + 1.4
    assert _get(client, batch_id)["status"] == "in_progress"
    clock.now = T0 + 1.5
    batch = _get(client, batch_id)
    assert (batch["status"], batch["expired_at"], batch["expires_at"]) == ("expired", T0 + 1, T0 + 1)
    assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 0}
    assert sorted(item["custom_id"] for item in _download(client, batch["output_file_id"])) == ["row-0", "row-1"]
    errors = _download(client, batch["error_file_id"])
    assert sorted(item["custom_id"] for item in errors) == ["row-2", "row-3"]
    for item in errors:
        assert item["response"] is None and item["error"]["code"] == "batch_expired"
    assert [r.custom_id for r in fake.batch_requests] == ["row-0", "row-1"]  # only answered lines are billed


def test_an_injected_expiry(fake: FakeOpenAI, client: httpx.Client) -> None:
    fake.inject_batch("expire", completed=1)
    first = _get(client, _create(client, _rows(3))["id"])
    assert first["status"] == "expired" and first["request_counts"]["completed"] == 1
    assert [item["custom_id"] for item in _download(client, first["output_file_id"])] == ["row-0"]
    assert {item["error"]["code"] for item in _download(client, first["error_file_id"])} == {"batch_expired"}
    assert _get(client, _create(client, _rows(3))["id"])["status"] == "completed"  # one batch only
    assert [b.fault for b in fake.batches] == ["expire", None]


def test_a_stalled_batch_runs_until_cancelled(fake: FakeOpenAI, client: httpx.Client, clock: Clock) -> None:
    fake.inject_batch("stall", completed=2)
    batch_id = _create(client, _rows(5))["id"]
    clock.now = T0 + 365 * 24 * 3600  # a year later: past the 24 h window too
    batch = _get(client, batch_id)
    assert batch["status"] == "in_progress"
    assert batch["request_counts"] == {"total": 5, "completed": 2, "failed": 0}

    cancelling = client.post(f"/batches/{batch_id}/cancel").json()
    assert cancelling["status"] == "cancelling" and cancelling["cancelling_at"] == clock.now
    batch = _get(client, batch_id)
    assert batch["status"] == "cancelled" and batch["cancelled_at"] == clock.now
    assert sorted(item["custom_id"] for item in _download(client, batch["output_file_id"])) == ["row-0", "row-1"]
    errors = _download(client, batch["error_file_id"])
    assert sorted(item["custom_id"] for item in errors) == ["row-2", "row-3", "row-4"]
    assert {item["error"]["code"] for item in errors} == {"batch_cancelled"}
    again = client.post(f"/batches/{batch_id}/cancel")
    assert again.status_code == 409 and "cancelled" in again.json()["error"]["message"]


def test_cancel_in_progress_keeps_what_completed(fake: FakeOpenAI, client: httpx.Client, clock: Clock) -> None:
    fake.batch_delay = 3.0
    batch_id = _create(client, _rows(4))["id"]
    clock.now = T0 + 1.5  # two lines answered
    assert client.post(f"/batches/{batch_id}/cancel").json()["status"] == "cancelling"
    clock.now = T0 + 2.4  # cancelling lasts one phase; no line is answered meanwhile
    assert _get(client, batch_id)["status"] == "cancelling"
    clock.now = T0 + 2.5
    batch = _get(client, batch_id)
    assert batch["status"] == "cancelled"
    assert batch["request_counts"] == {"total": 4, "completed": 2, "failed": 0}
    assert fake.batches[0].output_custom_ids in {("row-0", "row-1"), ("row-1", "row-0")}
    assert len(fake.batch_requests) == 2


def test_a_failed_batch_has_errors_and_no_files(fake: FakeOpenAI, client: httpx.Client) -> None:
    fake.inject_batch("fail")
    batch = _get(client, _create(client, _rows(2))["id"])
    assert batch["status"] == "failed" and batch["failed_at"] is not None
    assert batch["errors"]["data"][0]["code"] == "token_limit_exceeded"
    assert (batch["output_file_id"], batch["error_file_id"]) == (None, None)
    assert batch["request_counts"] == {"total": 0, "completed": 0, "failed": 0}
    assert fake.batch_requests == []
    assert client.post(f"/batches/{batch['id']}/cancel").status_code == 409


def test_list_is_newest_first_and_pages(client: httpx.Client) -> None:
    ids = [_create(client, _rows(1))["id"] for _ in range(3)]
    page = client.get("/batches", params={"limit": 2}).json()
    assert [b["id"] for b in page["data"]] == [ids[2], ids[1]]
    assert (page["object"], page["first_id"], page["last_id"], page["has_more"]) == ("list", ids[2], ids[1], True)
    rest = client.get("/batches", params={"limit": 2, "after": page["last_id"]}).json()
    assert [b["id"] for b in rest["data"]] == [ids[0]] and rest["has_more"] is False
    assert [b["status"] for b in rest["data"]] == ["completed"]
    assert [b["id"] for b in client.get("/batches").json()["data"]] == ids[::-1]
    assert client.get("/batches", params={"limit": 0}).status_code == 400
    assert client.get("/batches", params={"after": "batch_nope"}).status_code == 400


def _bad(replace: dict[str, Any]) -> bytes:
    lines = _rows(3)
    lines[1] = {**lines[1], **replace}
    return _jsonl(lines)


@pytest.mark.parametrize(
    ("content", "filename", "code", "line"),
    [
        (_jsonl(_rows(2)), "in.csv", "invalid_file_format", None),
        (b"", "in.jsonl", "empty_file", None),
        (b"\xff\xfe", "in.jsonl", "invalid_file_format", None),
        (_jsonl(_rows(1)) + b"not json\n", "in.jsonl", "invalid_json_line", 2),
        (_jsonl(_rows(1)) + b"[1, 2]\n", "in.jsonl", "invalid_json_line", 2),
        (_bad({"custom_id": ""}), "in.jsonl", "invalid_custom_id", 2),
        (_bad({"method": "GET"}), "in.jsonl", "invalid_method", 2),
        (_bad({"url": "/v1/embeddings"}), "in.jsonl", "invalid_url", 2),
        (_bad({"body": "hello"}), "in.jsonl", "invalid_body", 2),
        (_bad({"custom_id": "row-0"}), "in.jsonl", "duplicate_custom_id", 2),
        (_bad({"body": {**_body("x"), "model": "other"}}), "in.jsonl", "mismatched_model", 2),
        (_bad({"body": {"messages": []}}), "in.jsonl", "missing_required_parameter", 2),
        (_jsonl([{k: v for k, v in _rows(1)[0].items() if k != "url"}]), "in.jsonl", "missing_required_parameter", 1),
    ],
)
def test_a_bad_input_file_is_a_400(
    fake: FakeOpenAI, client: httpx.Client, content: bytes, filename: str, code: str, line: int | None
) -> None:
    response = _upload(client, content, filename)
    assert response.status_code == 400
    error = response.json()["error"]
    assert (error["code"], error["type"]) == (code, "invalid_request_error")
    if line is not None:
        assert error["message"].startswith(f"Line {line}: ")
    assert fake.files == []


def test_bad_uploads_and_batch_requests(fake: FakeOpenAI, client: httpx.Client) -> None:
    content = _jsonl(_rows(1))
    no_purpose = client.post("/files", files={"file": ("in.jsonl", content)})
    assert no_purpose.status_code == 400 and no_purpose.json()["error"]["param"] == "purpose"
    wrong_purpose = client.post("/files", data={"purpose": "fine-tune"}, files={"file": ("in.jsonl", content)})
    assert wrong_purpose.status_code == 400
    assert client.post("/files", json={"purpose": "batch"}).status_code == 400  # not multipart
    file_id = _upload(client, content).json()["id"]
    good = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    changes: list[tuple[dict[str, Any], int, str]] = [
        ({"input_file_id": "file-nope"}, 404, "id"),
        ({"endpoint": "/v1/embeddings"}, 400, "endpoint"),
        ({"completion_window": "1h"}, 400, "completion_window"),
        ({"metadata": {"n": 1}}, 400, "metadata"),
    ]
    for change, status, param in changes:
        response = client.post("/batches", json={**good, **change})
        assert (response.status_code, response.json()["error"]["param"]) == (status, param), change
    missing = client.post("/batches", json={"input_file_id": file_id})
    assert missing.json()["error"]["code"] == "missing_required_parameter"
    assert client.get("/batches/batch_nope").status_code == 404
    assert client.post("/batches/batch_nope/cancel").status_code == 404
    assert client.get("/files/file-nope/content").status_code == 404
    assert fake.batches == []


def test_the_api_key_is_checked_and_reset_forgets_batches() -> None:
    with FakeOpenAI(api_key="sk-right", batch_delay=0) as fake:
        with httpx.Client(base_url=fake.base_url, timeout=5) as anonymous:
            assert anonymous.get("/batches").status_code == 401
            assert _upload(anonymous, _jsonl(_rows(1))).status_code == 401
        headers = {"Authorization": "Bearer sk-right"}
        with httpx.Client(base_url=fake.base_url, timeout=5, headers=headers) as client:
            batch = _get(client, _create(client, _rows(2))["id"])
            fake.inject_batch_line("500")
            fake.inject_batch("stall")
            assert len(fake.batches) == 1 and len(fake.files) == 2 and len(fake.batch_requests) == 2
            fake.reset()
            assert (fake.batches, fake.files, fake.batch_requests) == ([], [], [])
            assert client.get(f"/batches/{batch['id']}").status_code == 404
            again = _get(client, _create(client, _rows(2))["id"])
            assert again["status"] == "completed" and again["request_counts"]["failed"] == 0  # faults forgotten


def _usage(client: httpx.Client, system: str, model: str = "gpt-test") -> dict[str, Any]:
    response = client.post("/chat/completions", json=_body("hello", system=system, model=model))
    assert response.status_code == 200
    usage: dict[str, Any] = response.json()["usage"]
    return usage


def test_cached_tokens_only_for_a_long_repeated_system_message(fake: FakeOpenAI, client: httpx.Client) -> None:
    short = "You label things."
    assert "prompt_tokens_details" not in _usage(client, short)
    assert "prompt_tokens_details" not in _usage(client, short)
    just_under = "y" * (1023 * 4)  # 1023 tokens: never cached
    _usage(client, just_under)
    assert "prompt_tokens_details" not in _usage(client, just_under)

    first = _usage(client, LONG_SYSTEM)
    assert first["prompt_tokens_details"] == {"cached_tokens": 0}
    second = _usage(client, LONG_SYSTEM)
    assert second["prompt_tokens_details"] == {"cached_tokens": 1024}  # 1100 tokens, down to a multiple of 128
    assert second["prompt_tokens"] == first["prompt_tokens"]
    assert _usage(client, LONG_SYSTEM, model="other")["prompt_tokens_details"] == {"cached_tokens": 0}
    assert [r.cached_tokens for r in fake.requests] == [0, 0, 0, 0, 0, 1024, 0]

    # Batch lines share the cache with realtime requests.
    lines = [_line("a", "one", system=LONG_SYSTEM), _line("b", "two", system="z" * 8192)]
    batch = _get(client, _create(client, lines)["id"])
    usage = {
        item["custom_id"]: item["response"]["body"]["usage"] for item in _download(client, batch["output_file_id"])
    }
    assert usage["a"]["prompt_tokens_details"] == {"cached_tokens": 1024}
    assert usage["b"]["prompt_tokens_details"] == {"cached_tokens": 0}  # first sight of that prefix
    assert sorted(r.cached_tokens for r in fake.batch_requests) == [0, 1024]


def test_the_command_line_sets_the_batch_delay() -> None:
    out = subprocess.run([sys.executable, SERVER, "--help"], capture_output=True, text=True, check=True).stdout
    assert "--batch-delay SECONDS" in out
    refused = subprocess.run([sys.executable, SERVER, "--batch-delay", "-1"], capture_output=True, text=True)
    assert refused.returncode == 2 and "--batch-delay must not be negative" in refused.stderr
    server = subprocess.Popen([sys.executable, SERVER, "--batch-delay", "0"], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        with httpx.Client(base_url=server.stdout.readline().strip(), timeout=30) as client:
            batch = _get(client, _create(client, _rows(2))["id"])
            assert batch["status"] == "completed"  # the first poll: no delay
    finally:
        server.terminate()
        server.wait(timeout=30)


@pytest.mark.parametrize("delay", [0.1, 0.7, 2.0, 5.0, 7.3])
def test_every_line_is_answered_by_the_end_of_in_progress(
    fake: FakeOpenAI, client: httpx.Client, clock: Clock, delay: float
) -> None:
    # The last line is due when in_progress ends: a rounding past that end left it unanswered (at
    # today's epoch times, not at the small T0 the other tests use).
    clock.now = 1_790_308_795.36
    fake.batch_delay = delay
    batch = _create(client, _rows(7))
    clock.now += delay  # completed, exactly at its due time
    done = _get(client, batch["id"])
    assert done["status"] == "completed" and done["request_counts"] == {"total": 7, "completed": 7, "failed": 0}
    assert done["error_file_id"] is None and len(_download(client, done["output_file_id"])) == 7
