"""A deterministic, local, fault-injecting fake of Anthropic's Messages API and Message Batches.

``FakeAnthropic`` answers as ``openai_server.FakeOpenAI`` does (the same answers, valid for the
schema a request asks for, the same queued faults and records) but speaks Anthropic's protocol:

``POST /v1/messages``
    Needs ``x-api-key`` (401 ``authentication_error`` otherwise) and ``anthropic-version`` (400);
    ``model``, ``max_tokens`` and ``messages`` are required, ``temperature`` must be within 0..1.
    ``system`` is a string or a list of text blocks; ``output_config.format`` (``type:
    json_schema``) constrains the answer, whose text block holds JSON valid for that schema.
    The answer is a ``message`` with one ``text`` block and a ``stop_reason`` (``end_turn``, or
    ``max_tokens`` for a ``truncated`` fault). Every answer carries ``anthropic-ratelimit-*`` headers.
``usage``
    ``input_tokens`` + ``cache_creation_input_tokens`` + ``cache_read_input_tokens`` is every
    prompt token (``ceil(chars / 4)``); ``output_tokens`` the answer's. A system block marked
    ``cache_control: {type: ephemeral}`` caches the system text up to and including it when that
    is at least 1024 tokens: written the first time the server sees it for the model, read every
    later time (realtime and batch requests share the cache). Unmarked prompts are never cached.
Faults (``inject``)
    ``429`` (``rate_limit_error`` with ``retry-after``), ``500`` (``api_error``), ``529``
    (``overloaded_error``), ``timeout``, ``invalid``, ``truncated`` and ``invented`` as for FakeOpenAI.
Message Batches
    ``POST /v1/messages/batches`` with ``{requests: [{custom_id, params}]}`` (custom ids of at most
    64 characters of ``[a-zA-Z0-9_-]``, unique; at most 100,000 requests), ``GET
    /v1/messages/batches[/{id}]``, ``POST .../{id}/cancel``, and ``GET .../{id}/results``: JSONL in
    shuffled order. A batch ends ``batch_delay`` seconds after it was created (read when it is
    looked at, so a test may change it); its requests are answered then, each as the realtime
    endpoint would. ``inject_batch_line`` bends results: ``errored`` (``api_error``),
    ``overloaded``, ``bad_request`` (``invalid_request_error``), ``expired``, ``canceled``,
    ``invalid`` and ``truncated``. ``lose_creates = n``: the next n creates make their batch but
    answer a 500, as a lost answer does.
"""

from __future__ import annotations

import json
import math
import random
import re
import time
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

from _fake_http import FakeHandler, content_text, load_json
from openai_server import FakeOpenAI, RecordedRequest, _Chat, _Completion, _QueuedFault, _recorded, _take

CACHE_MIN_TOKENS = 1024
MAX_REQUESTS = 100_000
_CUSTOM_ID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
FAULT_KINDS = ("429", "500", "529", "timeout", "invalid", "truncated", "invented")
LINE_FAULTS = ("errored", "overloaded", "bad_request", "expired", "canceled", "invalid", "truncated")


def error(type_: str, message: str) -> bytes:
    return json.dumps({"type": "error", "error": {"type": type_, "message": message}}).encode()


def rfc3339(when: float) -> str:
    return datetime.fromtimestamp(when, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class AnthropicRecord(RecordedRequest):
    """A request as FakeOpenAI records one, plus what Anthropic bills apart: ``cached_tokens`` are the
    cache reads, ``cache_write_tokens`` the writes; ``body`` is the request body as sent."""

    cache_write_tokens: int = 0
    body: Any = None


@dataclass
class _MessageBatch:
    id: str
    created: float  # time.time()
    started: float  # time.monotonic()
    requests: list[dict[str, Any]]
    results: list[dict[str, Any]] = field(default_factory=list)
    ended_at: float | None = None
    cancelled: bool = False


class _Handler(FakeHandler):
    server_version = "FakeAnthropic/1.0"
    owned_by = "fake-anthropic"
    unknown_url_code = "not_found_error"
    models_need_auth = True
    bad_body_message = "Could not read request body"
    max_body_bytes = None

    def authorized(self) -> bool:
        key = self.owner.api_key
        return key is None or self.headers.get("x-api-key") == key

    def send_unauthorized(self) -> None:
        self.send_body(401, error("authentication_error", "invalid x-api-key"))


def _as_chat(body: Any) -> dict[str, Any]:
    """A Messages body as the chat body FakeOpenAI's answers are a function of."""
    if not isinstance(body, dict):
        return {}
    system = body.get("system")
    messages = [{"role": "system", "content": content_text(system)}] if system else []
    messages += [m for m in body.get("messages") or [] if isinstance(m, dict)]
    chat: dict[str, Any] = {"model": body.get("model"), "messages": messages}
    schema = ((body.get("output_config") or {}).get("format") or {}).get("schema")
    if isinstance(schema, dict):
        chat["response_format"] = {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}
    return chat


def _problem(body: Any) -> str | None:
    if not isinstance(body, dict):
        return "Invalid JSON body"
    for key in ("model", "max_tokens", "messages"):
        if key not in body:
            return f"{key}: Field required"
    if not isinstance(body["messages"], list) or not body["messages"]:
        return "messages: at least one message is required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return "max_tokens: must be a positive integer"
    temperature = body.get("temperature", 1.0)
    if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
        return "temperature: must be within 0 and 1"
    if any(not isinstance(m, dict) or m.get("role") not in ("user", "assistant") for m in body["messages"]):
        return "messages: roles must be user or assistant (system text is the top-level `system`)"
    fmt = (body.get("output_config") or {}).get("format")
    if fmt is not None and (fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict)):
        return "output_config.format: type json_schema with a schema is required"
    return None


def _cached_prefix(body: dict[str, Any]) -> str:
    """The system text up to and including the last block marked cache_control, else ''."""
    system = body.get("system")
    if not isinstance(system, list):
        return ""
    marked = [i for i, block in enumerate(system) if isinstance(block, dict) and block.get("cache_control")]
    if not marked:
        return ""
    return "".join(str(block.get("text") or "") for block in system[: marked[-1] + 1])


class FakeAnthropic(FakeOpenAI):
    """A local Messages API and Message Batches server with fault injection."""

    _handler = _Handler
    _thread_name = "fake-anthropic"

    def __init__(self, *, api_key: str | None = None, batch_delay: float = 0.1, **kwargs: Any) -> None:
        super().__init__(api_key=api_key, batch_delay=batch_delay, **kwargs)
        self._written: set[tuple[str, str]] = set()
        self._message_batches: dict[str, _MessageBatch] = {}
        self._line_faults: list[_QueuedFault] = []
        self._shuffle = random.Random(0)
        self.rate_limits = {"requests": 4000, "tokens": 400_000}
        self.lose_creates = 0  # the next creates make their batch, but answer a 500 (a lost answer)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"  # the API root: requests go to <base_url>/v1/messages

    def reset(self) -> None:
        super().reset()
        with self._lock:
            self._written.clear()
            self._message_batches.clear()
            self._line_faults.clear()

    def inject(self, kind: str, *, times: int = 1, match: str | None = None, retry_after: float | None = None) -> None:
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")
        with self._lock:
            self._queue.append(_QueuedFault(kind, times, match, retry_after))

    def inject_batch_line(self, kind: str, *, times: int = 1, match: str | None = None) -> None:
        if kind not in LINE_FAULTS:
            raise ValueError(f"unknown batch line fault {kind!r}; expected one of {LINE_FAULTS}")
        with self._lock:
            self._line_faults.append(_QueuedFault(kind, times, match, None))

    @property
    def message_batches(self) -> list[_MessageBatch]:
        """Every batch created, oldest first, caught up with the clock."""
        with self._batch_lock:
            for batch in list(self._message_batches.values()):
                self._end_if_due(batch)
            return list(self._message_batches.values())

    # -- the Messages API ---------------------------------------------------- #

    def _handle_chat(self, handler: FakeHandler, raw: bytes) -> None:
        handler.send_not_found()  # no /v1/chat/completions here

    def _rate_headers(self, now: float) -> dict[str, str]:
        reset = rfc3339(now + 60)
        headers = {}
        for name, limit in (("requests", self.rate_limits["requests"]), ("tokens", self.rate_limits["tokens"])):
            headers.update(
                {
                    f"anthropic-ratelimit-{name}-limit": str(limit),
                    f"anthropic-ratelimit-{name}-remaining": str(limit - 1),
                    f"anthropic-ratelimit-{name}-reset": reset,
                }
            )
        return headers

    def _usage(self, body: dict[str, Any], chat: _Chat) -> tuple[int, int, int]:
        """(input, cache writes, cache reads) of a request that is answered."""
        prefix = _cached_prefix(body)
        tokens = math.ceil(len(prefix) / 4)
        if tokens < CACHE_MIN_TOKENS:
            return chat.prompt_tokens, 0, 0
        key = (chat.model, prefix)
        with self._lock:
            seen = key in self._written
            self._written.add(key)
        tokens = min(tokens, chat.prompt_tokens)
        return chat.prompt_tokens - tokens, 0 if seen else tokens, tokens if seen else 0

    def _message(
        self, body: dict[str, Any], fault: str | None, invalid_ids: tuple[str, ...] = (), key: str | None = None
    ) -> tuple[dict[str, Any], AnthropicRecord]:
        chat = _Chat.parse(_as_chat(body))
        completion: _Completion = self._complete(chat, fault, invalid_ids)
        fresh, written, read = self._usage(body, chat)
        finish = completion.body["choices"][0]["finish_reason"]
        message = {
            "id": f"msg_{self._next_id()}",
            "type": "message",
            "role": "assistant",
            "model": chat.model,
            "content": [{"type": "text", "text": completion.content}],
            "stop_reason": "max_tokens" if finish == "length" else "end_turn",
            "stop_sequence": None,
            "usage": {
                "input_tokens": fresh,
                "cache_creation_input_tokens": written,
                "cache_read_input_tokens": read,
                "output_tokens": completion.completion_tokens,
            },
        }
        base = _recorded(chat, 200, fault, completion, authorization=key, invalid_ids=invalid_ids)
        record = self._record(base, cached_tokens=read, cache_write_tokens=written, body=body)
        return message, record

    def _record(self, base: RecordedRequest, **extra: Any) -> AnthropicRecord:
        values = {f.name: getattr(base, f.name) for f in fields(RecordedRequest)}
        return AnthropicRecord(**{**values, **extra})

    def _handle_messages(self, handler: FakeHandler, raw: bytes) -> None:
        with self._lock:
            self.arrivals.append(time.monotonic())
        body = load_json(raw)
        chat = _Chat.parse(_as_chat(body))
        key = handler.headers.get("x-api-key")

        def record(status: int, fault: str | None) -> None:
            base = _recorded(chat, status, fault, None, authorization=key)
            with self._lock:
                self._records.append(self._record(base, body=body))

        if not handler.authorized():
            record(401, None)
            handler.send_unauthorized()
            return
        version = handler.headers.get("anthropic-version")
        problem = _problem(body) or (None if version else "anthropic-version: header is required")
        if problem is not None:
            record(400, None)
            handler.send_body(400, error("invalid_request_error", problem))
            return
        fault, retry_after, invalid_ids = self._pick_fault(chat)
        if fault == "timeout":
            self._hang(handler)
            record(0, fault)
            return
        if self.latency > 0:
            self._stopping.wait(self.latency)
        headers = self._rate_headers(time.time())
        if fault in ("429", "500", "529"):
            record(int(fault), fault)
            kinds = {"429": "rate_limit_error", "500": "api_error", "529": "overloaded_error"}
            if fault == "429":
                headers["retry-after"] = f"{0.05 if retry_after is None else retry_after:g}"
                headers["anthropic-ratelimit-requests-remaining"] = "0"
            handler.send_body(int(fault), error(kinds[fault], f"fake {kinds[fault]}"), headers=headers)
            return
        message, recorded = self._message(body, fault, invalid_ids, key)
        with self._lock:
            self._records.append(recorded)
        handler.send_body(200, json.dumps(message).encode(), headers=headers)

    # -- Message Batches ------------------------------------------------------ #

    def _handle_extra(self, handler: FakeHandler, method: str, raw: bytes) -> bool:
        route = handler.route()
        if method == "POST" and route == "/v1/messages":
            self._handle_messages(handler, raw)
            return True
        if not route.startswith("/v1/messages/batches"):
            return False
        if not handler.authorized():
            handler.send_unauthorized()
            return True
        if not handler.headers.get("anthropic-version"):
            handler.send_body(400, error("invalid_request_error", "anthropic-version: header is required"))
            return True
        parts = route.split("/")[4:]  # after /v1/messages/batches
        with self._batch_lock:
            status, body, content_type = self._batch_route(method, parts, raw, handler)
        handler.send_body(status, body, content_type=content_type)
        return True

    def _batch_route(self, method: str, parts: list[str], raw: bytes, handler: FakeHandler) -> tuple[int, bytes, str]:
        json_type = "application/json"
        if method == "POST" and not parts:
            return self._new_batch_of(load_json(raw), handler)
        if method == "GET" and not parts:
            batches = [self._object(b, handler) for b in reversed(list(self._message_batches.values()))]
            return 200, json.dumps({"data": batches, "has_more": False}).encode(), json_type
        batch = self._message_batches.get(parts[0])
        if batch is None:
            return 404, error("not_found_error", f"no batch {parts[0]}"), json_type
        self._end_if_due(batch)
        if method == "GET" and len(parts) == 1:
            return 200, json.dumps(self._object(batch, handler)).encode(), json_type
        if method == "GET" and parts[1:] == ["results"]:
            if batch.ended_at is None:
                return 400, error("invalid_request_error", "the batch has not ended"), json_type
            lines = b"".join(json.dumps(r).encode() + b"\n" for r in batch.results)
            return 200, lines, "application/binary"
        if method == "POST" and parts[1:] == ["cancel"]:
            batch.cancelled = True
            self._end_if_due(batch)
            return 200, json.dumps(self._object(batch, handler)).encode(), json_type
        return 404, error("not_found_error", "unknown URL"), json_type

    def _new_batch_of(self, body: Any, handler: FakeHandler) -> tuple[int, bytes, str]:
        requests = body.get("requests") if isinstance(body, dict) else None
        bad = "requests: a non-empty list is required" if not isinstance(requests, list) or not requests else None
        if bad is None and len(requests) > MAX_REQUESTS:  # type: ignore[arg-type]
            bad = f"requests: at most {MAX_REQUESTS}"
        ids = [r.get("custom_id") if isinstance(r, dict) else None for r in requests or []]
        if bad is None and any(not isinstance(i, str) or not _CUSTOM_ID.match(i) for i in ids):
            bad = "custom_id: at most 64 characters of a-z, A-Z, 0-9, _ and -"
        if bad is None and len(set(ids)) != len(ids):
            bad = "custom_id: must be unique within a batch"
        for request in requests or []:
            problem = bad or _problem(request.get("params") if isinstance(request, dict) else None)
            if problem is not None:
                return 400, error("invalid_request_error", problem), "application/json"
        batch = _MessageBatch(f"msgbatch_{self._next_id()}", time.time(), time.monotonic(), list(requests or []))
        self._message_batches[batch.id] = batch
        if self.lose_creates > 0:
            self.lose_creates -= 1
            return 500, error("api_error", "fake api_error after the batch was created"), "application/json"
        return 200, json.dumps(self._object(batch, handler)).encode(), "application/json"

    def _end_if_due(self, batch: _MessageBatch) -> None:
        """End the batch once batch_delay has passed (or it was cancelled): every request answered."""
        if batch.ended_at is not None:
            return
        if not batch.cancelled and time.monotonic() - batch.started < self.batch_delay:
            return
        results = [self._result(batch, r) for r in batch.requests]
        self._shuffle.shuffle(results)
        batch.results, batch.ended_at = results, time.time()

    def _result(self, batch: _MessageBatch, request: dict[str, Any]) -> dict[str, Any]:
        custom_id, params = request["custom_id"], request["params"]
        if batch.cancelled:
            return {"custom_id": custom_id, "result": {"type": "canceled"}}
        chat = _Chat.parse(_as_chat(params))
        with self._lock:
            queued = _take(self._line_faults, chat.row_texts)
        fault = None if queued is None else queued.kind
        if fault in ("expired", "canceled"):
            return {"custom_id": custom_id, "result": {"type": fault}}
        if fault in ("errored", "overloaded", "bad_request"):
            kind = {"errored": "api_error", "overloaded": "overloaded_error", "bad_request": "invalid_request_error"}
            inner = json.loads(error(kind[fault], f"fake {kind[fault]}"))
            return {"custom_id": custom_id, "result": {"type": "errored", "error": inner}}
        invalid_ids = chat.rows_matching(queued.match) if fault == "invalid" and queued and chat.texts else ()
        message, record = self._message(params, fault, invalid_ids)
        record.batch_id, record.custom_id = batch.id, custom_id
        with self._lock:
            self._batch_records.append(record)
        return {"custom_id": custom_id, "result": {"type": "succeeded", "message": message}}

    def _object(self, batch: _MessageBatch, handler: FakeHandler) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        if batch.ended_at is None:
            counts["processing"] = len(batch.requests)
        for result in batch.results:
            counts[result["result"]["type"]] += 1
        ended = batch.ended_at is not None
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": "ended" if ended else ("canceling" if batch.cancelled else "in_progress"),
            "request_counts": counts,
            "created_at": rfc3339(batch.created),
            "expires_at": rfc3339(batch.created + 86400),
            "ended_at": rfc3339(batch.ended_at) if ended else None,  # type: ignore[arg-type]
            "cancel_initiated_at": rfc3339(batch.created) if batch.cancelled else None,
            "archived_at": None,
            "results_url": f"{self.base_url}/v1/messages/batches/{batch.id}/results" if ended else None,
        }

    @property
    def batch_requests(self) -> list[RecordedRequest]:
        """Every batch request answered so far (batches are caught up first)."""
        self.message_batches  # noqa: B018 - catches the batches up
        with self._lock:
            return list(self._batch_records)


__all__ = ["AnthropicRecord", "FakeAnthropic"]
