"""Batch mode without dbt: the Batch API client and the runner against a fake of the API in an
httpx.MockTransport (files, batches, their output and error files). Answers are matched by custom_id
under shuffling; files split at the limits; lines without a valid answer go to a follow-up batch or
to the fallback; a deadline leaves batches pending; the batch price is half the list price; the key
never shows in an error; and a batch line's body is the body the realtime provider sends."""

from __future__ import annotations

import asyncio
import email
import email.policy
import json
import random
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from dbt_llm.batch.lines import BatchOutcome, BatchRecord, CollectResult, EndedBatch, Settling, settle_lines
from dbt_llm.batch.runner import BatchRunner, BatchSettings
from dbt_llm.engine import Budget, Request
from dbt_llm.functions.tasks import build_task, cache_key
from dbt_llm.pricing import Price, PriceTable
from dbt_llm.providers.base import FatalProviderError, TransientError
from dbt_llm.providers.openai import OpenAIProvider, chat_body
from dbt_llm.providers.openai_batch import BatchStatus, OpenAIBatchClient, request_line

BASE_URL = "https://batch.test/v1"
KEY = "sk-batch-0123456789-SECRET"
KEY_ENV = "DBT_LLM_TEST_KEY"
TASK = build_task(
    {"function": "classify", "labels": ["billing", "bug"]},
    provider="openai",
    default_model="gpt-4o-mini",
    temperature=0,
)
BATCH_PRICE = Price(0.075, 0.30, cached_input=0.0375)  # half of gpt-4o-mini's list prices


def text_of(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"]).split("<input>\n", 1)[1].split("\n</input>", 1)[0]


def usage_of(text: str) -> tuple[int, int, int]:
    """(prompt, completion, cached) tokens the fake bills for a text: distinct per text."""
    return 100 + len(text), 5 + len(text) % 3, len(text)


class FakeBatchAPI:
    """Just enough of the Batch API. A batch is in_progress at its first GET and ends at its second,
    with the status `final[n]` for the nth batch created (completed when not given; in_progress never
    ends). Each line's fate is `fate(text, try)`, try counting the lines of that text so far: ok,
    invalid, length, refusal, error500, bad_request, or drop (no line at all). Output lines are shuffled;
    an expired batch runs its first half and puts the rest in the error file as batch_expired."""

    def __init__(self, fate: Callable[[str, int], str] | None = None, final: list[str] | None = None) -> None:
        self.fate = fate or (lambda text, n: "ok")
        self.final = final or []
        self.files: dict[str, bytes] = {}
        self.uploads: list[bytes] = []
        self.batches: dict[str, dict[str, Any]] = {}
        self.polls: Counter[str] = Counter()
        self.tries: Counter[str] = Counter()
        self.log: list[str] = []
        self.throttle: list[float] = []  # each answers one GET of a batch with 429 and this retry-after
        self.lose_next_create = False  # the next create makes the batch, but its answer is lost
        self.unknown_line = False  # add a line with a custom_id no request has
        self.echo_error = False  # also put the first answered line's custom_id in the error file
        self.shuffled = False
        self.rng = random.Random(7)

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def input_lines(self, batch_id: str) -> list[dict[str, Any]]:
        data = self.files[self.batches[batch_id]["input_file_id"]]
        return [json.loads(line) for line in data.splitlines()]

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path.removeprefix("/v1")
        self.log.append(f"{request.method} {path}")
        if request.headers.get("authorization") != f"Bearer {KEY}":
            # Servers echo the key they refuse: the client must not pass it on.
            given = request.headers.get("authorization", "")
            return httpx.Response(401, json={"error": {"message": f"Incorrect API key provided: {given}"}})
        if request.method == "POST" and path == "/files":
            return self.upload(request)
        if request.method == "POST" and path == "/batches":
            return self.create(json.loads(request.content))
        if request.method == "GET" and path == "/batches":
            return httpx.Response(200, json={"data": list(reversed(self.batches.values()))})
        parts = path.strip("/").split("/")
        if parts[0] == "batches" and parts[1] in self.batches:
            if request.method == "POST" and parts[2:] == ["cancel"]:
                self.batches[parts[1]]["status"] = "cancelled"
                return httpx.Response(200, json=self.batches[parts[1]])
            if self.throttle:
                return httpx.Response(429, headers={"retry-after": str(self.throttle.pop(0))}, json={"error": {}})
            return httpx.Response(200, json=self.poll(parts[1]))
        if parts[0] == "files" and parts[2:] == ["content"] and parts[1] in self.files:
            return httpx.Response(200, content=self.files[parts[1]])
        return httpx.Response(404, json={"error": {"message": f"no route {request.method} {path}"}})

    def upload(self, request: httpx.Request) -> httpx.Response:
        head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
        message = email.message_from_bytes(head + request.content, policy=email.policy.HTTP)
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        assert fields["purpose"].get_content().strip() == "batch"
        data = fields["file"].get_payload(decode=True)
        assert isinstance(data, bytes)
        file_id = f"file-{len(self.files) + 1}"
        self.files[file_id] = data
        self.uploads.append(data)
        return httpx.Response(200, json={"id": file_id, "object": "file", "purpose": "batch", "bytes": len(data)})

    def create(self, body: dict[str, Any]) -> httpx.Response:
        assert body["endpoint"] == "/v1/chat/completions" and body["completion_window"] == "24h"
        batch_id = f"batch_{len(self.batches) + 1}"
        self.batches[batch_id] = {
            "id": batch_id,
            "object": "batch",
            "status": "validating",
            "input_file_id": body["input_file_id"],
            "output_file_id": None,
            "error_file_id": None,
            "created_at": 1_700_000_000 + len(self.batches),
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "errors": None,
        }
        if self.lose_next_create:
            self.lose_next_create = False
            raise httpx.ReadTimeout("the answer was lost")
        return httpx.Response(200, json=self.batches[batch_id])

    def poll(self, batch_id: str) -> dict[str, Any]:
        batch = self.batches[batch_id]
        self.polls[batch_id] += 1
        if batch["status"] == "validating":
            batch["status"] = "in_progress"
        elif batch["status"] == "in_progress":
            index = list(self.batches).index(batch_id)
            final = self.final[index] if index < len(self.final) else "completed"
            if final != "in_progress":
                self.finish(batch, final)
        return batch

    def finish(self, batch: dict[str, Any], final: str) -> None:
        batch["status"] = final
        if final == "failed":
            batch["errors"] = {"data": [{"code": "token_limit_exceeded", "message": "enqueued token limit"}]}
            return
        lines = self.input_lines(batch["id"])
        ran = lines[: len(lines) // 2] if final == "expired" else lines
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = [
            {"custom_id": line["custom_id"], "response": None, "error": {"code": "batch_expired", "message": "late"}}
            for line in lines[len(ran) :]
        ]
        for line in ran:
            text = text_of(line["body"])
            self.tries[text] += 1
            fate = self.fate(text, self.tries[text])
            if fate in ("error500", "bad_request"):
                status = 500 if fate == "error500" else 400
                body = {"error": {"message": f"{fate} for this line"}}
                errors.append({"custom_id": line["custom_id"], "response": {"status_code": status, "body": body}})
            elif fate != "drop":
                output.append(
                    {"custom_id": line["custom_id"], "response": {"status_code": 200, "body": answer(text, fate)}}
                )
        if self.echo_error and output:
            errors.append({"custom_id": output[0]["custom_id"], "response": None, "error": {"code": "server_error"}})
        if self.unknown_line:
            output.append({"custom_id": "not-a-key", "response": {"status_code": 200, "body": answer("x bug", "ok")}})
        before = [o["custom_id"] for o in output]
        self.rng.shuffle(output)
        self.shuffled = self.shuffled or before != [o["custom_id"] for o in output]
        for name, rows in (("output_file_id", output), ("error_file_id", errors)):
            if rows:
                file_id = f"file-{len(self.files) + 1}"
                self.files[file_id] = b"".join(json.dumps(row).encode() + b"\n" for row in rows)
                batch[name] = file_id


def answer(text: str, fate: str) -> dict[str, Any]:
    """A chat completion for the text: its last word is its label."""
    prompt, completion, cached = usage_of(text)
    content = json.dumps({"label": text.split()[-1] if fate != "invalid" else "neither"})
    message: dict[str, Any] = {"role": "assistant", "content": content}
    finish = "stop"
    if fate == "length":
        message["content"], finish = content[:5], "length"
    elif fate == "refusal":
        message = {"role": "assistant", "content": None, "refusal": "I cannot help with that."}
    usage = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage}


class Clock:
    """The runner's monotonic clock and sleep: sleeping moves the clock, no time passes."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def client(fake: FakeBatchAPI, key: str = KEY) -> OpenAIBatchClient:
    return OpenAIBatchClient(base_url=BASE_URL, api_key=lambda: key, api_key_env=KEY_ENV, transport=fake.transport())


def runner(fake: FakeBatchAPI, clock: Clock, prices: PriceTable | None = None, **settings: Any) -> BatchRunner:
    settings_ = BatchSettings(**settings)
    return BatchRunner(client(fake), prices=prices or PriceTable(), settings=settings_, sleep=clock.sleep, clock=clock)


def request(text: str) -> Request:
    return Request(cache_key(TASK.spec_hash, text), TASK, text, Budget(None))


def texts(n: int) -> list[str]:
    return [f"ticket {i:02d} {'bug' if i % 3 else 'billing'}" for i in range(n)]


def label(outcome: BatchOutcome) -> str:
    assert outcome.result is not None, outcome.error
    return str(json.loads(outcome.result)["label"])


def run(fake: FakeBatchAPI, reqs: list[Request], clock: Clock | None = None, **kwargs: Any) -> Any:
    """BatchRunner.run with a deadline an hour away; returns (result, records created, outcomes seen)."""
    clock = clock or Clock()
    created: list[BatchRecord] = []
    seen: list[BatchOutcome] = []
    kwargs.setdefault("max_attempts", 3)
    result = runner(fake, clock).run(
        reqs, deadline=clock() + 3600, on_created=created.append, on_outcome=seen.append, **kwargs
    )
    return result, created, seen


def test_answers_are_matched_by_custom_id_not_by_position() -> None:
    fake = FakeBatchAPI()
    fake.unknown_line = fake.echo_error = True  # a stray line, and an error line for a key also answered
    reqs = [request(t) for t in texts(12)]
    result, created, seen = run(fake, reqs)
    assert fake.shuffled  # the output lines came back in another order than sent
    by_key = {o.key: o for o in result.outcomes}
    assert len(created) == 1 and seen == result.outcomes and set(by_key) == {r.key for r in reqs}
    for r in reqs:
        outcome = by_key[r.key]
        prompt, completion, cached = usage_of(r.text)
        assert label(outcome) == r.text.split()[-1]
        assert (outcome.usage.prompt_tokens, outcome.usage.completion_tokens) == (prompt, completion)
        assert outcome.usage.cached_tokens == cached and outcome.attempts == 1
        assert outcome.batch_id == created[0].batch_id
    assert result.unknown == [(created[0].batch_id, "not-a-key")]


def test_batch_price_is_half_the_list_price_unless_given() -> None:
    assert PriceTable().price("gpt-4o-mini-2024-07-18", batch=True) == BATCH_PRICE
    assert PriceTable().price("no-such-model", batch=True) is None
    text = "ticket 01 bug"
    prompt, completion, cached = usage_of(text)
    (outcome,) = run(FakeBatchAPI(), [request(text)])[0].outcomes
    assert outcome.cost_usd == pytest.approx(BATCH_PRICE.cost(prompt, completion, cached))
    assert outcome.cost_usd == pytest.approx(PriceTable().price("gpt-4o-mini").cost(prompt, completion, cached) / 2)  # type: ignore[union-attr]
    clock = Clock()
    given = Price(4.0, 8.0, batch_input=1.0, batch_output=2.0)  # a batch price of its own
    own = runner(FakeBatchAPI(), clock, prices=PriceTable({"gpt-4o-mini": given}))
    outcomes: list[BatchOutcome] = []
    own.run([request(text)], deadline=3600, max_attempts=1, on_created=lambda r: None, on_outcome=outcomes.append)
    assert outcomes[0].cost_usd == pytest.approx(Price(1.0, 2.0).cost(prompt, completion, cached))


def test_files_split_at_the_line_and_byte_limits_and_each_batch_is_recorded_when_created() -> None:
    reqs = [request(t) for t in texts(7)]
    fake = FakeBatchAPI()
    events: list[str] = fake.log  # the fake logs each call; on_created logs into the same list
    records = runner(fake, Clock(), max_lines=3).submit(
        [*reqs, reqs[0]], lambda record: events.append(f"recorded {record.batch_id}")
    )
    assert [len(r.keys) for r in records] == [3, 3, 1]  # the repeated key is one line
    assert [k for r in records for k in r.keys] == [r.key for r in reqs]
    assert events == [
        "POST /files", "POST /batches", "recorded batch_1",
        "POST /files", "POST /batches", "recorded batch_2",
        "POST /files", "POST /batches", "recorded batch_3",
    ]  # fmt: skip
    for record, upload in zip(records, fake.uploads, strict=True):
        assert [json.loads(line)["custom_id"] for line in upload.splitlines()] == list(record.keys)
    two_lines = len(fake.uploads[0].splitlines(keepends=True)[0]) * 2 + 10
    fake = FakeBatchAPI()
    records = runner(fake, Clock(), max_bytes=two_lines).submit(reqs, lambda record: None)
    assert len(records) == 4 and all(len(upload) <= two_lines for upload in fake.uploads)


def test_lines_without_a_valid_answer_go_to_a_follow_up_batch() -> None:
    a, b, c, d = ("a bug", "b billing", "c bug", "d billing")
    first_try = {a: "invalid", b: "error500", c: "length"}
    fake = FakeBatchAPI(fate=lambda text, n: first_try.get(text, "ok") if n == 1 else "ok")
    reqs = [request(t) for t in (a, b, c, d)]
    result, created, seen = run(fake, reqs)
    assert len(created) == 2 and sorted(result.outcomes, key=lambda o: o.key) == sorted(seen, key=lambda o: o.key)
    resent = {text_of(line["body"]): line["body"] for line in fake.input_lines(created[1].batch_id)}
    assert set(resent) == {a, b, c}
    assert resent[c]["max_tokens"] == 2 * TASK.max_tokens  # cut at max_tokens: sent again with twice the room
    by_text = {r.text: o for r in reqs for o in result.outcomes if o.key == r.key}
    assert {t: label(o) for t, o in by_text.items()} == {a: "bug", b: "billing", c: "bug", d: "billing"}
    assert {t: o.attempts for t, o in by_text.items()} == {a: 2, b: 2, c: 2, d: 1}
    # The invalid and the cut answers were billed as well; the 500 line was not.
    prompt, completion, cached = usage_of(a)
    assert by_text[a].usage.prompt_tokens == 2 * prompt and by_text[c].usage.prompt_tokens == 2 * usage_of(c)[0]
    assert by_text[b].usage.prompt_tokens == usage_of(b)[0]
    assert by_text[a].cost_usd == pytest.approx(2 * BATCH_PRICE.cost(prompt, completion, cached))


def test_attempts_exhausted_are_final_failures_and_a_refused_line_is_not_resent() -> None:
    always = {"a bug": "invalid", "b bug": "error500", "c bug": "bad_request", "d bug": "refusal"}
    fake = FakeBatchAPI(fate=lambda text, n: always[text])
    reqs = [request(t) for t in always]
    result, created, seen = run(fake, reqs, max_attempts=2)
    assert len(created) == 2 and fake.tries == {"a bug": 2, "b bug": 2, "c bug": 1, "d bug": 2}
    assert sorted(o.key for o in seen) == sorted(o.key for o in result.outcomes) == sorted(r.key for r in reqs)
    by_text = {r.text: o for r in reqs for o in seen if o.key == r.key}
    assert all(o.result is None for o in seen) and not result.retry and not result.pending
    assert {t: (o.error_kind, o.attempts) for t, o in by_text.items()} == {
        "a bug": ("invalid_answer", 2),
        "b bug": ("retries_exhausted", 2),
        "c bug": ("bad_request", 1),
        "d bug": ("invalid_answer", 2),
    }
    assert "does not fit the schema" in str(by_text["a bug"].error)
    assert str(by_text["b bug"].error).startswith("server_error: HTTP 500")
    assert "HTTP 400" in str(by_text["c bug"].error) and by_text["d bug"].error == "the model refused to answer"


def test_fallback_receives_the_failed_requests_instead_of_a_follow_up_batch() -> None:
    first_try = {"a bug": "invalid", "b bug": "error500"}
    fake = FakeBatchAPI(fate=lambda text, n: first_try.get(text, "ok"))
    reqs = [request(t) for t in ("a bug", "b bug", "c bug")]
    handed: list[list[Request]] = []
    result, created, seen = run(fake, reqs, fallback=handed.append)
    assert len(created) == 1 and [label(o) for o in seen] == ["bug"] and seen[0].key == reqs[2].key
    assert len(handed) == 1 and sorted(r.key for r in handed[0]) == sorted([reqs[0].key, reqs[1].key])
    spent = {r.request.text: r.so_far.usage.prompt_tokens for r in result.handed_off}
    assert spent == {"a bug": usage_of("a bug")[0], "b bug": 0}  # what the batch billed comes with them


def test_an_expired_batch_keeps_its_answers_and_resends_the_rest() -> None:
    reqs = [request(t) for t in texts(6)]
    dropped = reqs[0].text  # ran, but its line is in neither file
    fake = FakeBatchAPI(fate=lambda text, n: "drop" if text == dropped and n == 1 else "ok", final=["expired"])
    clock = Clock()
    (record,) = runner(fake, clock).submit(reqs, lambda record: None)
    collected = runner(fake, clock).collect(
        [record], {r.key: r for r in reqs}, deadline=3600, on_outcome=lambda outcome: None
    )
    assert collected.finished[0].status == "expired" and not collected.pending
    assert sorted(o.key for o in collected.outcomes) == sorted(r.key for r in reqs[1:3])
    kinds = {retry.request.key: retry.kind for retry in collected.retry}
    assert kinds == {r.key: "batch_expired" for r in (reqs[0], *reqs[3:])}
    fake = FakeBatchAPI(final=["expired"])
    result, created, _ = run(fake, reqs)
    assert len(created) == 2 and len(fake.input_lines(created[1].batch_id)) == 3
    assert sorted(o.attempts for o in result.outcomes) == [1, 1, 1, 2, 2, 2]


def test_at_the_deadline_batches_still_running_are_pending_without_outcomes() -> None:
    fake = FakeBatchAPI(final=["in_progress"])
    clock = Clock()
    reqs = [request(t) for t in texts(3)]
    seen: list[BatchOutcome] = []
    result = runner(fake, clock).run(
        reqs, deadline=100, max_attempts=3, on_created=lambda r: None, on_outcome=seen.append
    )
    assert [r.status for r in result.pending] == ["in_progress"] and result.pending[0].keys == tuple(
        r.key for r in reqs
    )
    assert not seen and not result.outcomes and not result.retry
    assert clock.sleeps == [5, 10, 20, 40, 25]  # backoff doubles, capped by what is left of the deadline
    assert clock.now == 100 and fake.polls["batch_1"] == 6  # one last look at the deadline


def test_polling_backs_off_to_its_cap_and_honours_retry_after() -> None:
    fake = FakeBatchAPI()
    fake.throttle = [30.0]
    clock = Clock()
    (record,) = runner(fake, clock).submit([request("a bug")], lambda r: None)
    collected = runner(fake, clock).collect([record], {}, deadline=3600, on_outcome=lambda o: None)
    assert clock.sleeps == [30.0, 10.0] and not collected.pending  # 429 then in_progress then completed
    fake = FakeBatchAPI(final=["in_progress"])
    clock = Clock()
    (record,) = runner(fake, clock, poll_initial=1, poll_max=4).submit([request("a bug")], lambda r: None)
    runner(fake, clock, poll_initial=1, poll_max=4).collect([record], {}, deadline=20, on_outcome=lambda o: None)
    assert clock.sleeps == [1, 2, 4, 4, 4, 4, 1]


def test_a_lost_create_answer_does_not_create_a_second_batch() -> None:
    fake = FakeBatchAPI()
    fake.lose_next_create = True
    result, created, _ = run(fake, [request("a bug")])
    assert len(fake.batches) == 1 and [r.batch_id for r in created] == ["batch_1"]
    assert fake.log[:4] == ["POST /files", "POST /batches", "GET /batches", "GET /batches/batch_1"]
    assert [label(o) for o in result.outcomes] == ["bug"]


def test_a_batch_the_caller_failed_to_record_is_cancelled() -> None:
    fake = FakeBatchAPI()

    def fail(record: BatchRecord) -> None:
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        runner(fake, Clock()).submit([request("a bug")], fail)
    assert fake.batches["batch_1"]["status"] == "cancelled"


def test_the_key_never_appears_in_an_error() -> None:
    fake = FakeBatchAPI()
    wrong = "sk-wrong-key-0987654321"
    with pytest.raises(FatalProviderError) as refused:
        client(fake, key=wrong).get("batch_1")
    assert KEY_ENV in str(refused.value) and wrong not in str(refused.value) and "[redacted]" in str(refused.value)
    with pytest.raises(FatalProviderError) as missing:
        client(fake).content("file-404")
    assert BASE_URL in str(missing.value) and KEY not in str(missing.value)

    def echo(request: httpx.Request) -> httpx.Response:
        header = request.headers["authorization"]
        if request.url.path.endswith("/cancel"):
            raise httpx.ConnectError(f"proxy refused {header}")
        return httpx.Response(503, json={"error": {"message": f"overloaded, {header}"}}, headers={"retry-after": "9"})

    echoing = OpenAIBatchClient(
        base_url=BASE_URL, api_key=lambda: KEY, api_key_env=KEY_ENV, transport=httpx.MockTransport(echo)
    )
    with pytest.raises(TransientError) as busy:
        echoing.get("batch_1")
    assert busy.value.retry_after == 9 and KEY not in str(busy.value)
    with pytest.raises(TransientError) as cut:
        echoing.cancel("batch_1")
    assert cut.value.kind == "connection" and KEY not in str(cut.value)
    runner(fake, Clock()).submit([request("a bug")], lambda r: None)
    assert KEY.encode() not in fake.uploads[0]


def test_a_batch_line_is_the_request_the_realtime_provider_sends() -> None:
    text = "the invoice was charged twice"
    realtime: list[dict[str, Any]] = []

    def capture(request: httpx.Request) -> httpx.Response:
        realtime.append(json.loads(request.content))
        return httpx.Response(200, json=answer("x billing", "ok"))

    provider = OpenAIProvider(
        base_url=BASE_URL, api_key=lambda: KEY, timeout=5, max_connections=1, transport=httpx.MockTransport(capture)
    )

    async def send() -> None:
        await provider.complete(
            model=TASK.model,
            messages=TASK.messages(text),
            response_format=TASK.response_format(),
            max_tokens=TASK.max_tokens,
            temperature=TASK.temperature,
            top_logprobs=TASK.top_logprobs,
        )
        await provider.aclose()

    asyncio.run(send())
    assert realtime[0]["logprobs"] is True and realtime[0]["top_logprobs"] == 20  # the source of confidence
    fake = FakeBatchAPI()
    runner(fake, Clock()).submit([request(text)], lambda r: None)
    (line,) = [json.loads(raw) for raw in fake.uploads[0].splitlines()]
    assert line == {
        "custom_id": request(text).key,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": realtime[0],
    }
    asked = request(text)
    body = chat_body(
        asked.model, asked.messages(), asked.response_format(), TASK.max_tokens, asked.temperature, asked.top_logprobs
    )
    assert request_line(line["custom_id"], body) == line


def test_a_packed_line_settles_each_row_on_its_own_and_shares_its_usage() -> None:
    budget = Budget(None)
    rows = [Request(cache_key(TASK.spec_hash, t), TASK, t, budget, 3) for t in ["a bug", "b billing", "c bug"]]
    lines: list[bytes] = []
    fake = FakeBatchAPI()
    [record] = runner(fake, Clock()).submit(rows, lambda r: None)
    [line] = fake.input_lines("batch_1")
    assert len(record.packed) == 3 and record.keys == tuple(r.key for r in rows)
    assert line["custom_id"] == record.packed[0][1] and line["body"]["response_format"]["json_schema"]["strict"]
    content = {"r1": {"label": "bug"}, "r2": {"label": "neither"}, "r3": {"label": "bug"}}  # r2 off the schema
    body = {
        "choices": [
            {"index": 0, "message": {"role": "assistant", "content": json.dumps(content)}, "finish_reason": "stop"}
        ],
        "usage": {"prompt_tokens": 301, "completion_tokens": 31},
    }
    lines.append(json.dumps({"custom_id": line["custom_id"], "response": {"status_code": 200, "body": body}}).encode())
    result = CollectResult()
    by_key = {r.key: r for r in rows}
    ended = EndedBatch(record, BatchStatus("batch_1", "completed"), lines)
    settle_lines(ended, Settling(by_key, {}, lambda o: None, PriceTable()), result)
    assert [label(o) for o in result.outcomes] == ["bug", "bug"]
    [retry] = result.retry
    assert retry.request.key == rows[1].key and retry.kind == "invalid_answer"
    every = [*result.outcomes, retry.so_far]
    assert sum(o.usage.prompt_tokens for o in every) == 301 and sum(o.usage.completion_tokens for o in every) == 31
    assert sum(o.requests for o in every) == 1 and all(o.attempts == 1 for o in every)
