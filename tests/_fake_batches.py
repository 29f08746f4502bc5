"""The OpenAI Batch API of the fake server: files, batches and their clock-driven processing.

``BatchService`` is the part of ``openai_server.FakeOpenAI`` that answers ``/v1/files`` and
``/v1/batches`` (the module docstring of ``openai_server`` documents the endpoints and knobs).
It stores the uploaded files, validates batch input files, and moves each batch through its
statuses lazily: nothing runs in the background; every request to a batch or file URL (and every
read of ``batches``, ``files`` or ``batch_requests``) first catches all batches up with
``clock()``.  How one line is answered is up to the server (``_answer_batch_line``), so a batch
line gets the very answer the realtime endpoint gives.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

from _fake_http import FakeHandler, FakeService, Reply, error_body

BATCH_ENDPOINT = "/v1/chat/completions"
COMPLETION_WINDOW = "24h"
BATCH_FAULTS: tuple[str, ...] = ("stall", "expire", "fail")
TERMINAL = frozenset({"completed", "expired", "cancelled", "failed"})
DEFAULT_BATCH_DELAY = 0.1
DEFAULT_BATCH_WINDOW = 24 * 3600.0
MAX_LINES = 50_000  # OpenAI's limit of requests in one batch file
MAX_METADATA_KEYS = 16

_EXPIRED = ("batch_expired", "This request could not be executed before the completion window expired.")
_CANCELLED = ("batch_cancelled", "This request was not executed because the batch was cancelled.")


class ApiError(Exception):
    """An OpenAI-style error answer of the files and batches endpoints."""

    def __init__(self, status: int, message: str, code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.param = param

    def reply(self) -> Reply:
        return Reply(self.status, error_body(self.message, "invalid_request_error", self.code, self.param))


# --------------------------------------------------------------------------- #
# Recorded objects
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class RecordedFile:
    """A stored file: an uploaded batch input (purpose ``batch``) or a batch's output or error file."""

    id: str
    purpose: str
    filename: str
    content: bytes
    created_at: int

    def to_object(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.content),
            "created_at": self.created_at,
            "expires_at": None,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


@dataclass(frozen=True)
class RecordedBatch:
    """A batch as of the moment it was read (``FakeOpenAI.batches``)."""

    id: str
    status: str
    input_file_id: str
    custom_ids: tuple[str, ...]  # in input order
    request_counts: dict[str, int]
    output_file_id: str | None
    error_file_id: str | None
    output_custom_ids: tuple[str, ...]  # in output-file order (shuffled)
    error_custom_ids: tuple[str, ...]  # in error-file order (shuffled)
    metadata: dict[str, str] | None
    fault: str | None  # the inject_batch() kind it got


# --------------------------------------------------------------------------- #
# Input validation
# --------------------------------------------------------------------------- #


def _header_params(value: str) -> Message:
    message = Message()
    message["content-type"] = value
    return message


def parse_multipart(content_type: str, raw: bytes) -> dict[str, tuple[str | None, bytes]]:
    """The fields of a ``multipart/form-data`` body: name -> (filename, exact bytes)."""
    header = _header_params(content_type)
    boundary = header.get_param("boundary")
    if header.get_content_type() != "multipart/form-data" or not isinstance(boundary, str) or not boundary:
        raise ApiError(400, "The request must be multipart/form-data with a boundary.")
    fields: dict[str, tuple[str | None, bytes]] = {}
    for part in raw.split(b"--" + boundary.encode())[1:]:
        if part.startswith(b"--"):
            break  # the closing delimiter
        head, sep, body = part.removeprefix(b"\r\n").partition(b"\r\n\r\n")
        if not sep:
            raise ApiError(400, "Malformed multipart body.")
        disposition = ""
        for line in head.decode("latin-1").split("\r\n"):
            key, _, value = line.partition(":")
            if key.strip().lower() == "content-disposition":
                disposition = value.strip()
        params = _header_params("form-data; " + disposition.partition(";")[2])
        name = params.get_param("name")
        filename = params.get_param("filename")
        if isinstance(name, str):
            fields[name] = (filename if isinstance(filename, str) else None, body.removesuffix(b"\r\n"))
    return fields


def _line_error(number: int, message: str, code: str) -> ApiError:
    return ApiError(400, f"Line {number}: {message}", code, "file")


def parse_batch_file(content: bytes, endpoint: str = BATCH_ENDPOINT) -> list[tuple[str, dict[str, Any]]]:
    """The (custom_id, body) of each line of a batch input file whose lines must have ``url`` ``endpoint``;
    ``ApiError`` (400) names the bad line."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        message = "Invalid file format for Batch API. Must be .jsonl (UTF-8)."
        raise ApiError(400, message, "invalid_file_format", "file") from None
    lines = text.split("\n")
    if lines and lines[-1].strip() == "":
        lines.pop()  # the newline that ends the last line
    if not lines:
        raise ApiError(400, "The batch input file is empty.", "empty_file", "file")
    if len(lines) > MAX_LINES:
        raise ApiError(400, f"A batch input file holds at most {MAX_LINES} requests.", "too_many_requests", "file")
    seen: set[str] = set()
    model: str | None = None
    parsed: list[tuple[str, dict[str, Any]]] = []
    for number, line in enumerate(lines, start=1):
        try:
            item = json.loads(line)
        except ValueError:
            item = None
        if not isinstance(item, dict):
            raise _line_error(number, "Invalid JSON line; each line must be one JSON object.", "invalid_json_line")
        custom_id = item.get("custom_id")
        for key in ("custom_id", "method", "url", "body"):
            if key not in item:
                raise _line_error(number, f"Missing required parameter: '{key}'.", "missing_required_parameter")
        if not isinstance(custom_id, str) or not custom_id:
            raise _line_error(number, "'custom_id' must be a non-empty string.", "invalid_custom_id")
        if item["method"] != "POST":
            raise _line_error(number, f"Invalid method {item['method']!r}; only 'POST' is supported.", "invalid_method")
        if item["url"] != endpoint:
            raise _line_error(number, f"Invalid url {item['url']!r}; expected '{endpoint}'.", "invalid_url")
        body = item["body"]
        if not isinstance(body, dict):
            raise _line_error(number, "'body' must be a JSON object.", "invalid_body")
        if custom_id in seen:
            message = f"The custom_id {custom_id!r} is a duplicate; each custom_id must be unique within a file."
            raise _line_error(number, message, "duplicate_custom_id")
        line_model = body.get("model")
        if not isinstance(line_model, str) or not line_model:
            raise _line_error(number, "Missing required parameter: 'body.model'.", "missing_required_parameter")
        if model is not None and line_model != model:
            message = f"The model {line_model!r} differs from {model!r} of line 1; a batch uses one model."
            raise _line_error(number, message, "mismatched_model")
        model = line_model
        seen.add(custom_id)
        parsed.append((custom_id, body))
    return parsed


# --------------------------------------------------------------------------- #
# A batch and its timeline
# --------------------------------------------------------------------------- #


@dataclass
class _Line:
    custom_id: str
    body: dict[str, Any]
    done_at: float | None  # when it gets answered; None: never (a stalled or expiring batch)
    status: int | None = None  # HTTP status of its answer, once answered
    response: dict[str, Any] | None = None
    line_id: str = ""
    request_id: str = ""


@dataclass
class _Batch:
    id: str
    input_file_id: str
    metadata: dict[str, str] | None
    created: float
    lines: list[_Line]
    fault: str | None
    phase: float  # seconds of each of the three phases: validating, in_progress, finalizing (and cancelling)
    expires: float | None  # when it expires unless it completed before; None: never
    reported_expires: float
    status: str = "validating"
    times: dict[str, float] = field(default_factory=dict)  # status -> when it was entered
    cancelled_due: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    output_ids: tuple[str, ...] = ()
    error_ids: tuple[str, ...] = ()
    endpoint: str = BATCH_ENDPOINT

    def next_transition(self) -> tuple[float, str] | None:
        """The next status change and its time, if any; ties go to the regular step, not to expiry."""
        start = self.created
        steps = {
            "validating": "failed" if self.fault == "fail" else "in_progress",
            "in_progress": "finalizing",
            "finalizing": "completed",
        }
        if self.status == "cancelling":
            assert self.cancelled_due is not None
            return self.cancelled_due, "cancelled"
        step = steps.get(self.status)
        if step is None:
            return None
        due = {"failed": 1, "in_progress": 1, "finalizing": 2, "completed": 3}[step]
        regular: float | None = start + due * self.phase
        if self.fault in ("stall", "expire") and step in ("finalizing", "completed"):
            regular = None
        if self.expires is not None and step != "failed" and (regular is None or self.expires < regular):
            return self.expires, "expired"
        return None if regular is None else (regular, step)

    def counts(self) -> dict[str, int]:
        answered = [line for line in self.lines if line.status is not None]
        validated = self.status not in ("validating", "failed")
        return {
            "total": len(self.lines) if validated else 0,
            "completed": sum(1 for line in answered if line.status == 200),
            "failed": sum(1 for line in answered if line.status != 200),
        }

    def to_object(self) -> dict[str, Any]:
        def at(status: str) -> int | None:
            when = self.times.get(status)
            return None if when is None else int(when)

        errors = None
        if self.status == "failed":
            message = f"Enqueued token limit reached for this model in FakeOpenAI ({self.id} was injected to fail)."
            data = [{"code": "token_limit_exceeded", "message": message, "param": None, "line": None}]
            errors = {"object": "list", "data": data}
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": self.endpoint,
            "errors": errors,
            "input_file_id": self.input_file_id,
            "completion_window": COMPLETION_WINDOW,
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created),
            "in_progress_at": at("in_progress"),
            "expires_at": int(self.reported_expires),
            "finalizing_at": at("finalizing"),
            "completed_at": at("completed"),
            "failed_at": at("failed"),
            "expired_at": at("expired"),
            "cancelling_at": at("cancelling"),
            "cancelled_at": at("cancelled"),
            "request_counts": self.counts(),
            "metadata": self.metadata,
        }

    def record(self) -> RecordedBatch:
        return RecordedBatch(
            id=self.id,
            status=self.status,
            input_file_id=self.input_file_id,
            custom_ids=tuple(line.custom_id for line in self.lines),
            request_counts=self.counts(),
            output_file_id=self.output_file_id,
            error_file_id=self.error_file_id,
            output_custom_ids=self.output_ids,
            error_custom_ids=self.error_ids,
            metadata=None if self.metadata is None else dict(self.metadata),
            fault=self.fault,
        )


@dataclass
class _QueuedBatchFault:
    kind: str
    remaining: int
    completed: int


# --------------------------------------------------------------------------- #
# The endpoints
# --------------------------------------------------------------------------- #


class BatchService(FakeService):
    """``/v1/files`` and ``/v1/batches`` of a fake server; the server answers each line (``_answer_batch_line``)."""

    batch_endpoint: ClassVar[str] = BATCH_ENDPOINT  # the `url` of every line and the `endpoint` of every batch

    def __init__(
        self,
        *,
        api_key: str | None,
        hang_seconds: float,
        batch_delay: float = DEFAULT_BATCH_DELAY,
        batch_window: float = DEFAULT_BATCH_WINDOW,
    ) -> None:
        super().__init__(api_key=api_key, hang_seconds=hang_seconds)
        self.batch_delay = batch_delay
        self.batch_window = batch_window
        self.batch_seed = 0
        self.clock: Callable[[], float] = time.time
        # Taken before the server's own lock (answering a line takes that one), never after it.
        self._batch_lock = threading.RLock()
        self._files: dict[str, RecordedFile] = {}
        self._batches: dict[str, _Batch] = {}  # in creation order
        self._batch_faults: list[_QueuedBatchFault] = []

    def _answer_batch_line(self, batch_id: str, custom_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        """The HTTP status and body the realtime endpoint would give this line's body."""
        raise NotImplementedError

    # -- knobs and records -------------------------------------------------- #

    def inject_batch(self, kind: str, *, times: int = 1, completed: int = 0) -> None:
        """Make the next ``times`` batches created ``stall``, ``expire`` or ``fail`` (see the module docs)."""
        if kind not in BATCH_FAULTS:
            raise ValueError(f"unknown batch fault {kind!r}; expected one of {BATCH_FAULTS}")
        if times < 1:
            return
        with self._batch_lock:
            self._batch_faults.append(_QueuedBatchFault(kind, times, max(0, completed)))

    @property
    def batches(self) -> list[RecordedBatch]:
        """Every batch as of now, oldest first."""
        with self._batch_lock:
            self._catch_up()
            return [batch.record() for batch in self._batches.values()]

    @property
    def files(self) -> list[RecordedFile]:
        """Every stored file (inputs, outputs and error files) as of now, oldest first."""
        with self._batch_lock:
            self._catch_up()
            return list(self._files.values())

    def _reset_batches(self) -> None:
        with self._batch_lock:
            self._files.clear()
            self._batches.clear()
            self._batch_faults.clear()

    # -- processing --------------------------------------------------------- #

    def _catch_up(self) -> float:
        """Bring every batch up to ``clock()``; that time."""
        now = self.clock()
        for batch in self._batches.values():
            self._advance(batch, now)
        return now

    def _advance(self, batch: _Batch, now: float) -> None:
        while (step := batch.next_transition()) is not None and step[0] <= now:
            when, status = step
            if batch.status == "in_progress":
                self._answer_lines(batch, when)
            batch.status = status
            batch.times[status] = when
            if status in TERMINAL:
                self._write_results(batch)
        if batch.status == "in_progress":
            self._answer_lines(batch, now)

    def _answer_lines(self, batch: _Batch, until: float) -> None:
        for line in batch.lines:
            if line.status is None and line.done_at is not None and line.done_at <= until:
                line.status, line.response = self._answer_batch_line(batch.id, line.custom_id, line.body)
                number = self._next_id()
                line.line_id, line.request_id = f"batch_req_{number:08d}", f"req_{number:08d}"

    def _write_results(self, batch: _Batch) -> None:
        if batch.status == "failed":
            return
        left_out = _EXPIRED if batch.status == "expired" else _CANCELLED
        output: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []
        for line in batch.lines:
            if line.status is None:
                error: dict[str, Any] = {"code": left_out[0], "message": left_out[1]}
                errors.append(_result(f"batch_req_{self._next_id():08d}", line.custom_id, None, error))
                continue
            response = {"status_code": line.status, "request_id": line.request_id, "body": line.response}
            if line.status == 200:
                output.append(_result(line.line_id, line.custom_id, response, None))
            else:
                problem = (line.response or {}).get("error") or {}
                error = {"code": problem.get("code") or problem.get("type"), "message": problem.get("message")}
                errors.append(_result(line.line_id, line.custom_id, response, error))
        # OpenAI promises no order: clients must match answers by custom_id.
        rng = random.Random(f"{self.batch_seed}:{batch.id}")
        rng.shuffle(output)
        rng.shuffle(errors)
        batch.output_ids = tuple(item["custom_id"] for item in output)
        batch.error_ids = tuple(item["custom_id"] for item in errors)
        if output:
            batch.output_file_id = self._store(f"{batch.id}_output.jsonl", "batch_output", _jsonl(output)).id
        if errors:
            batch.error_file_id = self._store(f"{batch.id}_error.jsonl", "batch_output", _jsonl(errors)).id

    def _store(self, filename: str, purpose: str, content: bytes) -> RecordedFile:
        stored = RecordedFile(f"file-{self._next_id():08d}", purpose, filename, content, int(self.clock()))
        self._files[stored.id] = stored
        return stored

    def _new_batch(self, input_file: RecordedFile, metadata: dict[str, str] | None) -> _Batch:
        lines = parse_batch_file(input_file.content, self.batch_endpoint)
        fault: _QueuedBatchFault | None = self._batch_faults[0] if self._batch_faults else None
        if fault is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self._batch_faults.pop(0)
        kind = None if fault is None else fault.kind
        created = self.clock()
        phase = max(0.0, self.batch_delay) / 3
        to_answer = len(lines) if fault is None else min(fault.completed, len(lines))
        expires: float | None = created + self.batch_window
        if kind == "stall":
            expires = None
        elif kind == "expire":
            expires = created + 3 * phase  # when it would have completed

        def done_at(index: int) -> float | None:
            # Answers spread evenly over the in_progress phase, in input order. Written as the phase's end
            # is (created + 2 * phase), so the last line is due exactly then, not one rounding later.
            return created + phase * (1 + (index + 1) / to_answer) if index < to_answer else None

        return _Batch(
            id=f"batch_{self._next_id():08d}",
            input_file_id=input_file.id,
            metadata=metadata,
            created=created,
            lines=[_Line(custom_id, body, done_at(i)) for i, (custom_id, body) in enumerate(lines)],
            fault=kind,
            phase=phase,
            expires=expires,
            reported_expires=created + self.batch_window if expires is None else expires,
            endpoint=self.batch_endpoint,
        )

    # -- HTTP --------------------------------------------------------------- #

    def _handle_extra(self, handler: FakeHandler, method: str, raw: bytes) -> bool:
        parts = handler.route().split("/")[1:]  # "", "v1", "files", ... -> "v1", "files", ...
        if len(parts) < 2 or parts[0] != "v1" or parts[1] not in ("files", "batches"):
            return False
        if not handler.authorized():
            handler.send_unauthorized()
            return True
        route = tuple(parts[1:])
        try:
            with self._batch_lock:
                reply = self._route(handler, method, route, raw, self._catch_up())
        except ApiError as exc:
            reply = exc.reply()
        if reply is None:
            return False
        handler.send_reply(reply)
        return True

    def _route(self, handler: FakeHandler, method: str, route: tuple[str, ...], raw: bytes, now: float) -> Reply | None:
        match method, route:
            case "POST", ("files",):
                return _json(self._upload(handler.headers.get("Content-Type", ""), raw).to_object())
            case "GET", ("files", file_id):
                return _json(self._file(file_id).to_object())
            case "DELETE", ("files", file_id):
                del self._files[self._file(file_id).id]
                return _json({"id": file_id, "object": "file", "deleted": True})
            case "GET", ("files", file_id, "content"):
                return Reply(200, self._file(file_id).content, content_type="application/octet-stream")
            case "POST", ("batches",):
                return _json(self._create(raw).to_object())
            case "GET", ("batches",):
                return _json(self._list(urlsplit(handler.path).query))
            case "GET", ("batches", batch_id):
                return _json(self._batch(batch_id).to_object())
            case "POST", ("batches", batch_id, "cancel"):
                return _json(self._cancel(self._batch(batch_id), now).to_object())
        return None

    def _file(self, file_id: str) -> RecordedFile:
        stored = self._files.get(file_id)
        if stored is None:
            raise ApiError(404, f"No such File object: {file_id}", None, "id")
        return stored

    def _batch(self, batch_id: str) -> _Batch:
        batch = self._batches.get(batch_id)
        if batch is None:
            raise ApiError(404, f"No batch found with id '{batch_id}'.", None, "batch_id")
        return batch

    def _upload(self, content_type: str, raw: bytes) -> RecordedFile:
        fields = parse_multipart(content_type, raw)
        if "purpose" not in fields:
            raise ApiError(400, "Missing required parameter: 'purpose'.", "missing_required_parameter", "purpose")
        purpose = fields["purpose"][1].decode("utf-8", "replace")
        if purpose != "batch":
            raise ApiError(400, f"FakeOpenAI only stores files of purpose 'batch', not {purpose!r}.", None, "purpose")
        if "file" not in fields:
            raise ApiError(400, "Missing required parameter: 'file'.", "missing_required_parameter", "file")
        filename, content = fields["file"]
        if filename is not None and not filename.endswith(".jsonl"):
            raise ApiError(400, "Invalid file format for Batch API. Must be .jsonl", "invalid_file_format", "file")
        parse_batch_file(content, self.batch_endpoint)
        return self._store(filename or "upload.jsonl", purpose, content)

    def _create(self, raw: bytes) -> _Batch:
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise ApiError(400, "The body must be a JSON object.")
        for key in ("input_file_id", "endpoint", "completion_window"):
            if key not in body:
                raise ApiError(400, f"Missing required parameter: '{key}'.", "missing_required_parameter", key)
        if body["endpoint"] != self.batch_endpoint:
            message = f"This server only batches '{self.batch_endpoint}', not {body['endpoint']!r}."
            raise ApiError(400, message, None, "endpoint")
        if body["completion_window"] != COMPLETION_WINDOW:
            message = f"Invalid completion_window {body['completion_window']!r}; only '24h' is supported."
            raise ApiError(400, message, None, "completion_window")
        metadata = body.get("metadata")
        if metadata is not None and not (
            isinstance(metadata, dict)
            and len(metadata) <= MAX_METADATA_KEYS
            and all(isinstance(k, str) and isinstance(v, str) for k, v in metadata.items())
        ):
            raise ApiError(400, "metadata must be at most 16 string keys with string values.", None, "metadata")
        input_file = self._file(str(body["input_file_id"]))
        if input_file.purpose != "batch":
            message = f"File {input_file.id} has purpose {input_file.purpose!r}; a batch needs purpose 'batch'."
            raise ApiError(400, message, None, "input_file_id")
        batch = self._new_batch(input_file, metadata)
        self._batches[batch.id] = batch
        return batch  # answered as validating, like OpenAI: the client sees progress only by polling

    def _list(self, query: str) -> dict[str, Any]:
        params = parse_qs(query)
        try:
            limit = int(params.get("limit", ["20"])[0])
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            raise ApiError(400, "limit must be an integer between 1 and 100.", None, "limit")
        newest_first = list(reversed(self._batches.values()))
        after = params.get("after", [None])[0]
        if after is not None:
            ids = [batch.id for batch in newest_first]
            if after not in ids:
                raise ApiError(400, f"No batch found with id '{after}' to list after.", None, "after")
            newest_first = newest_first[ids.index(after) + 1 :]
        page = newest_first[:limit]
        return {
            "object": "list",
            "data": [batch.to_object() for batch in page],
            "first_id": page[0].id if page else None,
            "last_id": page[-1].id if page else None,
            "has_more": len(newest_first) > limit,
        }

    def _cancel(self, batch: _Batch, now: float) -> _Batch:
        if batch.status in TERMINAL:
            raise ApiError(409, f"Cannot cancel a batch with status '{batch.status}'.")
        if batch.status != "cancelling":
            # _catch_up answered the lines due by now; the rest never run.
            batch.status = "cancelling"
            batch.times["cancelling"] = now
            batch.cancelled_due = now + batch.phase
        return batch


def _json(value: Any) -> Reply:
    return Reply(200, json.dumps(value).encode())


def _result(line_id: str, custom_id: str, response: Any, error: Any) -> dict[str, Any]:
    """One line of an output or error file."""
    return {"id": line_id, "custom_id": custom_id, "response": response, "error": error}


def _jsonl(items: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(item) + "\n" for item in items).encode()
