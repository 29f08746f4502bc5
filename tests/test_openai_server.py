"""Tests for the fake OpenAI server used by the test suite and benchmarks."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from openai_server import FakeOpenAI, build_answer, is_valid

from dbt_llm.functions import prompts

CLASSIFY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {"label": {"type": "string", "enum": ["positive", "negative", "neutral"]}},
    "required": ["label"],
    "additionalProperties": False,
}

EXTRACT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "city": {"type": ["string", "null"]},
        "country": {"type": ["string", "null"]},
        "zip_code": {"type": ["string", "null"]},
        "population": {"type": ["integer", "null"]},
        "rating": {"type": "number"},
        "is_capital": {"type": "boolean"},
        "founded": {"type": ["string", "null"], "format": "date"},
        "tags": {"type": "array", "items": {"type": "string"}},
        "sentiment": {"type": ["string", "null"], "enum": ["good", "bad", None]},
        "address": {
            "type": "object",
            "properties": {"street": {"type": "string"}},
            "required": ["street"],
            "additionalProperties": False,
        },
    },
    "required": [
        "city",
        "country",
        "zip_code",
        "population",
        "rating",
        "is_capital",
        "founded",
        "tags",
        "sentiment",
        "address",
    ],
    "additionalProperties": False,
}


def _body(text: str, schema: dict[str, Any] | None = None, model: str = "gpt-test") -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "messages": [
            {"role": "system", "content": "You label things."},
            {"role": "user", "content": text},
        ],
    }
    if schema is not None:
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "strict": True, "schema": schema},
        }
    return body


@pytest.fixture
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI() as server:
        yield server


@pytest.fixture
def client(fake: FakeOpenAI) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.base_url, timeout=5) as c:
        yield c


def _chat(client: httpx.Client, text: str, schema: dict[str, Any] | None = None) -> httpx.Response:
    return client.post("/chat/completions", json=_body(text, schema))


def _answer(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return json.loads(response.json()["choices"][0]["message"]["content"])


def test_classify_is_deterministic_and_valid(fake: FakeOpenAI, client: httpx.Client) -> None:
    prompt = "Labels: positive, negative, neutral.\n<input>\nWhat a NEGATIVE experience\n</input>"
    assert _answer(_chat(client, prompt, CLASSIFY_SCHEMA)) == {"label": "negative"}
    assert fake.requests[0].text == "What a NEGATIVE experience"

    # No label in the text: a hash-chosen label, identical on every call.
    text = "the weather is a thing"
    first = _answer(_chat(client, text, CLASSIFY_SCHEMA))
    assert _answer(_chat(client, text, CLASSIFY_SCHEMA)) == first
    labels = ["positive", "negative", "neutral"]
    assert first == {"label": labels[int(hashlib.sha256(text.encode()).hexdigest(), 16) % 3]}
    # Whole words only: "neutrality" is not "neutral".
    assert build_answer(CLASSIFY_SCHEMA, "neutrality")["label"] in labels
    assert len(fake.answered()) == 3


def test_a_changed_model_gives_other_valid_answers_for_the_texts_it_matches(
    fake: FakeOpenAI, client: httpx.Client
) -> None:
    filter_schema = {
        "type": "object",
        "properties": {"answer": {"type": "boolean"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    before = {t: _answer(_chat(client, t, s)) for t, s in [("a NEGATIVE one", CLASSIFY_SCHEMA), ("b", filter_schema)]}
    fake.change_answers(match="NEGATIVE")
    assert _answer(_chat(client, "a NEGATIVE one", CLASSIFY_SCHEMA)) == {"label": "neutral"}  # the next label
    assert _answer(_chat(client, "b", filter_schema)) == before["b"]  # not matched: as before
    fake.change_answers()
    assert _answer(_chat(client, "b", filter_schema)) == {"answer": not before["b"]["answer"]}
    assert all(is_valid(r.schema or {}, json.loads(r.content or "")) for r in fake.requests)
    fake.reset()
    assert _answer(_chat(client, "a NEGATIVE one", CLASSIFY_SCHEMA)) == before["a NEGATIVE one"]


def test_extract_fields_and_nulls(client: httpx.Client) -> None:
    text = (
        "city: Paris, country: France; zip code = 75001\n"
        "population: lots, rating: 4.5, is_capital: yes, founded: 0250-01-01, "
        "street: Rue de Rivoli, vibe is good"
    )
    answer = _answer(_chat(client, text, EXTRACT_SCHEMA))
    assert answer == {
        "city": "Paris",
        "country": "France",
        "zip_code": "75001",
        "population": None,  # "lots" is not an integer
        "rating": 4.5,
        "is_capital": True,
        "founded": "0250-01-01",
        "tags": [],
        "sentiment": "good",
        "address": {"street": "Rue de Rivoli"},
    }
    assert is_valid(EXTRACT_SCHEMA, answer)

    empty = _answer(_chat(client, "nothing to see here", EXTRACT_SCHEMA))
    assert empty == {
        "city": None,
        "country": None,
        "zip_code": None,
        "population": None,
        "rating": 0.0,
        "is_capital": False,
        "founded": None,
        "tags": [],
        "sentiment": None,
        "address": {"street": ""},
    }
    assert is_valid(EXTRACT_SCHEMA, empty)
    assert _answer(_chat(client, "founded: last year", EXTRACT_SCHEMA))["founded"] is None


@pytest.mark.parametrize(
    "text", ["city: Oslo", "city: Oslo\n\nsecond paragraph, zip code = 0150", "", "Text: city: Bergen"]
)
def test_extraction_prompt_text_is_read_back(fake: FakeOpenAI, client: httpx.Client, text: str) -> None:
    """The extraction prompt's form (extract/5: the question's line, then `Text: ...`): the server reads
    the text back exactly, blank lines included, so its answer is the answer for the text alone."""
    messages = prompts.extract_messages(text, ["city", "zip_code"], None, [])
    question, _, rest = messages[-1]["content"].partition("\n")
    assert question.startswith("Extract the fields city, zip_code ") and rest == prompts.TEXT_PREFIX + text
    body = {"model": "gpt-test", "messages": messages, "response_format": _body("", EXTRACT_SCHEMA)["response_format"]}
    answer = _answer(client.post("/chat/completions", json=body))
    assert fake.requests[-1].text == text
    assert answer == build_answer(EXTRACT_SCHEMA, text)


def test_plain_text_usage_and_models(fake: FakeOpenAI, client: httpx.Client) -> None:
    response = _chat(client, "hello there")
    data = response.json()
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert data["model"] == "gpt-test"
    assert data["choices"][0]["message"]["content"] == "Reply to: hello there"  # free text: per input
    assert data["choices"][0]["finish_reason"] == "stop"
    prompt_chars = len("You label things.") + len("hello there")
    assert data["usage"] == {
        "prompt_tokens": math.ceil(prompt_chars / 4),
        "completion_tokens": 6,
        "total_tokens": math.ceil(prompt_chars / 4) + 6,
    }
    record = fake.requests[0]
    assert (record.prompt_tokens, record.completion_tokens, record.content) == (7, 6, "Reply to: hello there")

    models = client.get("/models")
    assert models.status_code == 200
    assert len(models.json()["data"]) == 1
    missing = client.get("/nope")
    assert missing.status_code == 404
    assert "error" in missing.json()


def test_wrong_api_key_is_401() -> None:
    with FakeOpenAI(api_key="sk-right") as fake:
        url = f"{fake.base_url}/chat/completions"
        bad = httpx.post(url, json=_body("hi"), headers={"Authorization": "Bearer sk-wrong"})
        assert bad.status_code == 401
        assert bad.json()["error"]["code"] == "invalid_api_key"
        good = httpx.post(url, json=_body("hi"), headers={"Authorization": "Bearer sk-right"})
        assert good.status_code == 200
        assert [r.status for r in fake.requests] == [401, 200]
        assert fake.requests[0].authorization == "Bearer sk-wrong"


def test_http_error_faults(fake: FakeOpenAI, client: httpx.Client) -> None:
    fake.inject("429", retry_after=0.25)
    fake.inject("500")
    fake.inject("503")
    fake.inject("502_html")
    limited = _chat(client, "a", CLASSIFY_SCHEMA)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "0.25"
    assert limited.headers["retry-after-ms"] == "250"
    assert limited.json()["error"]["type"] == "rate_limit_exceeded"
    assert _chat(client, "b", CLASSIFY_SCHEMA).status_code == 500
    assert _chat(client, "c", CLASSIFY_SCHEMA).json()["error"]["type"] == "server_error"
    gateway = _chat(client, "d", CLASSIFY_SCHEMA)
    assert gateway.status_code == 502
    assert gateway.headers["content-type"].startswith("text/html")
    assert "502 Bad Gateway" in gateway.text
    assert _chat(client, "e", CLASSIFY_SCHEMA).status_code == 200  # queue drained
    assert [(r.status, r.fault) for r in fake.requests] == [
        (429, "429"),
        (500, "500"),
        (503, "503"),
        (502, "502_html"),
        (200, None),
    ]
    assert [r.text for r in fake.answered()] == ["e"]


def test_invalid_truncated_and_match(fake: FakeOpenAI, client: httpx.Client) -> None:
    fake.inject("invalid", times=2, match="row-7")
    fake.inject("truncated")
    assert _chat(client, "row-1", CLASSIFY_SCHEMA).json()["choices"][0]["finish_reason"] == "length"
    invalid = _answer(_chat(client, "row-7 positive", CLASSIFY_SCHEMA))
    assert invalid == {"label": "not-a-label"}
    assert not is_valid(CLASSIFY_SCHEMA, invalid)
    missing_key = _answer(
        _chat(
            client,
            "row-7 city: Oslo",
            {
                **EXTRACT_SCHEMA,
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        )
    )
    assert missing_key == {}
    assert _answer(_chat(client, "row-7 positive", CLASSIFY_SCHEMA)) == {"label": "positive"}
    assert [r.fault for r in fake.requests] == ["truncated", "invalid", "invalid", None]
    assert len(fake.answered()) == 1


def test_timeout_fault_drops_connection() -> None:
    with FakeOpenAI(hang_seconds=0.5) as fake:
        fake.inject("timeout")
        with httpx.Client(base_url=fake.base_url, timeout=2) as client:
            started = time.monotonic()
            with pytest.raises(httpx.TransportError):
                _chat(client, "x", CLASSIFY_SCHEMA)
            assert 0.4 < time.monotonic() - started < 1.9
            assert _chat(client, "x", CLASSIFY_SCHEMA).status_code == 200
        assert [(r.status, r.fault, r.content) for r in fake.requests] == [
            (0, "timeout", None),
            (200, None, '{"label": "neutral"}'),
        ]


def test_stop_with_hung_connection_is_fast() -> None:
    fake = FakeOpenAI(hang_seconds=30).start()
    fake.inject("timeout")
    errors: list[BaseException] = []

    def call() -> None:
        try:
            httpx.post(f"{fake.base_url}/chat/completions", json=_body("x"), timeout=10)
        except httpx.TransportError as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 2
    while not fake._connections and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.05)
    started = time.monotonic()
    fake.stop()
    worker.join(timeout=5)
    assert time.monotonic() - started < 2
    assert len(errors) == 1


def test_concurrency_and_counting() -> None:
    with (
        FakeOpenAI(latency=0.3) as fake,
        httpx.Client(base_url=fake.base_url, timeout=5, limits=httpx.Limits(max_connections=50)) as client,
    ):
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=30) as pool:
            statuses = list(
                pool.map(
                    lambda i: _chat(client, f"item {i}", CLASSIFY_SCHEMA).status_code,
                    range(30),
                )
            )
        assert time.monotonic() - started < 1.5  # 30 x 0.3 s sequentially would be 9 s
        assert statuses == [200] * 30
        assert len(fake.requests) == 30
        assert sorted(r.text for r in fake.answered()) == sorted(f"item {i}" for i in range(30))
        fake.reset()
        assert fake.requests == []


def test_fault_rates_are_deterministic(fake: FakeOpenAI, client: httpx.Client) -> None:
    def run(seed: int) -> list[str | None]:
        fake.reset()
        fake.set_fault_rates({"500": 0.2, "invalid": 0.2, "429": 0.1}, seed=seed)
        for i in range(40):
            _chat(client, f"r{i}", CLASSIFY_SCHEMA)
        return [r.fault for r in fake.requests]

    first = run(7)
    assert run(7) == first
    assert {"500", "invalid", "429", None} <= set(first)
    assert run(8) != first
    fake.reset()
    assert _chat(client, "clean", CLASSIFY_SCHEMA).status_code == 200
    with pytest.raises(ValueError):
        fake.inject("418")


# --------------------------------------------------------------------------- #
# Packed requests: several rows in one request, answered per row id
# --------------------------------------------------------------------------- #


def _packed_schema(ids: list[str], row_schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {row_id: row_schema for row_id in ids},
        "required": list(ids),
        "additionalProperties": False,
    }


def _packed_body(rows: dict[str, str], row_schema: dict[str, Any], model: str = "gpt-test") -> dict[str, Any]:
    blocks = "\n\n".join(f'<input id="{row_id}">\n{text}\n</input>' for row_id, text in rows.items())
    body = _body(
        f"{blocks}\n\nFor each input above, answer the question.", _packed_schema(list(rows), row_schema), model
    )
    return body


def _packed(client: httpx.Client, rows: dict[str, str], row_schema: dict[str, Any]) -> httpx.Response:
    return client.post("/chat/completions", json=_packed_body(rows, row_schema))


def _unpacked(client: httpx.Client, text: str, schema: dict[str, Any]) -> Any:
    return _answer(_chat(client, f"Answer the question.\n<input>\n{text}\n</input>", schema))


def test_packed_answer_is_the_unpacked_answer_of_each_row(fake: FakeOpenAI, client: httpx.Client) -> None:
    classify_rows = {
        "r1": "What a NEGATIVE experience",
        "r2": "the weather is a thing\nover two lines",
        "r3": "so positive, really",
    }
    extract_rows = {
        "r1": "city: Paris, country: France; zip code = 75001\nrating: 4.5, is_capital: yes, vibe is good",
        "r2": "nothing to see here",
        "r3": "population: 12, founded: 1901-02-03, street: Main St",
    }
    for rows, row_schema in ((classify_rows, CLASSIFY_SCHEMA), (extract_rows, EXTRACT_SCHEMA)):
        fake.reset()
        response = _packed(client, rows, row_schema)
        packed = _answer(response)
        assert list(packed) == list(rows)
        assert packed == {row_id: _unpacked(client, text, row_schema) for row_id, text in rows.items()}
        assert packed == {row_id: build_answer(row_schema, text) for row_id, text in rows.items()}
        assert is_valid(_packed_schema(list(rows), row_schema), packed)

        record = fake.requests[0]
        assert (record.ids, record.texts, record.text) == (tuple(rows), tuple(rows.values()), "\n".join(rows.values()))
        assert (record.fault, record.invalid_ids) == (None, ())
        assert record in fake.answered()
        # Usage as for any request: the whole messages and the whole answer.
        body = _packed_body(rows, row_schema)
        prompt_chars = sum(len(m["content"]) for m in body["messages"])
        content = response.json()["choices"][0]["message"]["content"]
        assert response.json()["usage"]["prompt_tokens"] == record.prompt_tokens == math.ceil(prompt_chars / 4)
        assert response.json()["usage"]["completion_tokens"] == record.completion_tokens == math.ceil(len(content) / 4)
        # An unpacked request records its one text and no ids.
        unpacked = fake.requests[1]
        assert (unpacked.ids, unpacked.texts, unpacked.invalid_ids) == ((), (unpacked.text,), ())

    # Blocks whose ids are not the schema's property names: not packed, answered as one text.
    fake.reset()
    body = _packed_body({"a": "positive"}, CLASSIFY_SCHEMA)
    body["response_format"]["json_schema"]["schema"] = CLASSIFY_SCHEMA
    assert set(_answer(client.post("/chat/completions", json=body))) == {"label"}
    assert fake.requests[0].ids == ()


def test_packed_invalid_fault_breaks_only_matching_rows(fake: FakeOpenAI, client: httpx.Client) -> None:
    rows = {"r1": "row-1 positive", "r2": "row-2 negative", "r3": "row-3 neutral, not row-2"}
    fake.inject("invalid", match="row-2")
    answer = _answer(_packed(client, rows, CLASSIFY_SCHEMA))
    assert answer == {"r1": {"label": "positive"}, "r2": {"label": "not-a-label"}, "r3": {"label": "not-a-label"}}
    assert is_valid(CLASSIFY_SCHEMA, answer["r1"])
    assert not is_valid(CLASSIFY_SCHEMA, answer["r2"]) and not is_valid(CLASSIFY_SCHEMA, answer["r3"])

    fake.inject("invalid")  # no match: the first row
    extract = _answer(_packed(client, {"x": "city: Oslo", "y": "city: Rome"}, EXTRACT_SCHEMA))
    assert not is_valid(EXTRACT_SCHEMA, extract["x"])
    assert extract["y"] == build_answer(EXTRACT_SCHEMA, "city: Rome") and is_valid(EXTRACT_SCHEMA, extract["y"])

    fake.inject("invalid", match="zzz")  # matches no row of the next packed request: it stays queued
    assert _answer(_packed(client, rows, CLASSIFY_SCHEMA)) == {
        row_id: build_answer(CLASSIFY_SCHEMA, text) for row_id, text in rows.items()
    }
    assert _unpacked(client, "zzz positive", CLASSIFY_SCHEMA) == {"label": "not-a-label"}

    assert [(r.fault, r.invalid_ids) for r in fake.requests] == [
        ("invalid", ("r2", "r3")),
        ("invalid", ("x",)),
        (None, ()),
        ("invalid", ()),
    ]
    assert fake.answered() == [fake.requests[2]]


def test_packed_invalid_rate_is_per_row_and_seeded(fake: FakeOpenAI, client: httpx.Client) -> None:
    ids = ["r1", "r2", "r3", "r4"]

    def run(seed: int, rates: dict[str, float]) -> list[tuple[str | None, tuple[str, ...]]]:
        fake.reset()
        fake.set_fault_rates(rates, seed=seed)
        for i in range(25):
            rows = {row_id: f"request {i} row {row_id}" for row_id in ids}
            response = _packed(client, rows, CLASSIFY_SCHEMA)
            record = fake.requests[-1]
            if record.status != 200:
                assert record.invalid_ids == ()
                continue
            answer = _answer(response)
            for row_id in ids:
                assert is_valid(CLASSIFY_SCHEMA, answer[row_id]) == (row_id not in record.invalid_ids)
        return [(r.fault, r.invalid_ids) for r in fake.requests]

    first = run(3, {"invalid": 0.5})
    assert len(fake.answered()) == sum(1 for fault, _ in first if fault is None)
    assert run(3, {"invalid": 0.5}) == first
    assert run(4, {"invalid": 0.5}) != first
    broken = [row_id for _, invalid_ids in first for row_id in invalid_ids]
    assert 0 < len(broken) < 25 * len(ids)
    assert all((fault == "invalid") == bool(invalid_ids) for fault, invalid_ids in first)
    assert any(0 < len(invalid_ids) < len(ids) for _, invalid_ids in first)  # some rows of a request, not all

    # The request-level draw leaves `invalid` out: a 500 fails the whole request, rows are drawn otherwise.
    mixed = run(5, {"500": 0.3, "invalid": 0.3})
    assert {fault for fault, _ in mixed} == {"500", "invalid", None}
    assert all(invalid_ids == () for fault, invalid_ids in mixed if fault == "500")


def test_packed_request_level_faults_fail_the_whole_request(fake: FakeOpenAI, client: httpx.Client) -> None:
    rows = {"r1": "first positive", "r2": "second\nnegative"}
    fake.inject("500", match="second")
    fake.inject("truncated")
    failed = _packed(client, rows, CLASSIFY_SCHEMA)
    assert failed.status_code == 500
    assert failed.json()["error"]["type"] == "server_error"
    truncated = _packed(client, rows, CLASSIFY_SCHEMA)
    assert truncated.json()["choices"][0]["finish_reason"] == "length"
    assert _packed(client, rows, CLASSIFY_SCHEMA).status_code == 200
    assert [(r.status, r.fault, r.ids, r.texts, r.invalid_ids) for r in fake.requests] == [
        (500, "500", ("r1", "r2"), ("first positive", "second\nnegative"), ()),
        (200, "truncated", ("r1", "r2"), ("first positive", "second\nnegative"), ()),
        (200, None, ("r1", "r2"), ("first positive", "second\nnegative"), ()),
    ]
    assert fake.answered() == [fake.requests[2]]


def test_packed_batch_line_is_answered_per_id() -> None:
    lines = [
        ("p1", _packed_body({"a": "alpha positive", "b": "beta weird negative"}, CLASSIFY_SCHEMA)),
        ("p2", _packed_body({"c": "gamma neutral", "d": "delta weird positive"}, CLASSIFY_SCHEMA)),
        ("p3", _packed_body({"e": "epsilon long", "f": "zeta"}, CLASSIFY_SCHEMA)),
        ("u", _body("<input>\nweird neutral\n</input>", CLASSIFY_SCHEMA)),
    ]
    jsonl = "".join(
        json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions", "body": body}) + "\n"
        for cid, body in lines
    )
    with FakeOpenAI(batch_delay=0) as fake, httpx.Client(base_url=fake.base_url, timeout=5) as client:
        fake.inject_batch_line("invalid", times=2, match="weird")
        fake.inject_batch_line("truncated", match="long")
        uploaded = client.post("/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", jsonl.encode())})
        assert uploaded.status_code == 200, uploaded.text
        created = client.post(
            "/batches",
            json={
                "input_file_id": uploaded.json()["id"],
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
            },
        )
        batch = client.get(f"/batches/{created.json()['id']}").json()
        assert batch["status"] == "completed" and batch["request_counts"]["completed"] == 4
        output = client.get(f"/files/{batch['output_file_id']}/content").text.splitlines()
        choices = {item["custom_id"]: item["response"]["body"]["choices"][0] for item in map(json.loads, output)}
        answers = {cid: json.loads(choice["message"]["content"]) for cid, choice in choices.items() if cid != "p3"}
        assert answers == {
            "p1": {"a": {"label": "positive"}, "b": {"label": "not-a-label"}},
            "p2": {"c": {"label": "neutral"}, "d": {"label": "not-a-label"}},
            "u": {"label": "neutral"},  # the two `invalid` were spent on p1 and p2
        }
        assert choices["p3"]["finish_reason"] == "length"
        records = {r.custom_id: r for r in fake.batch_requests}
        assert [
            (cid, records[cid].fault, records[cid].ids, records[cid].invalid_ids) for cid in ("p1", "p2", "p3", "u")
        ] == [
            ("p1", "invalid", ("a", "b"), ("b",)),
            ("p2", "invalid", ("c", "d"), ("d",)),
            ("p3", "truncated", ("e", "f"), ()),
            ("u", None, (), ()),
        ]
        assert records["p2"].texts == ("gamma neutral", "delta weird positive")
        assert [r.custom_id for r in fake.batch_answered()] == ["u"]
