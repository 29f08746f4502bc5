"""A deterministic, local, fault-injecting fake of the OpenAI chat-completions API.

The server speaks just enough of the OpenAI HTTP API (``POST /v1/chat/completions``
and ``GET /v1/models``) for SQL-side LLM calls to be tested end to end without a
network.  Answers are a pure function of the request's input text and its
``response_format`` JSON schema, so they are reproducible and always valid for
that schema (unless a fault asks otherwise).  Every request is recorded, and
faults (rate limits, server errors, HTML gateways, hung connections, invalid
and truncated answers) can be queued or drawn at random with a fixed seed.

Usage::

    with FakeOpenAI(latency=0.01) as fake:
        client = OpenAI(base_url=fake.base_url, api_key="x")
        fake.inject("429", times=2)
        ...
        assert len(fake.requests) == 3

It only ever binds ``127.0.0.1``.  Run it by hand with
``python tests/openai_server.py --port 8765 --latency 0.2``; it prints its base URL first.
Options of the command line (``--help`` lists them all):

``--fault-rate KIND=RATE``
    Fault this share of requests at random, one seeded draw per request; repeat it for
    several kinds (the rates must sum to at most 1).  KIND is one of ``429``, ``500``,
    ``503``, ``502_html`` (an HTML gateway page), ``timeout`` (hold the connection, then drop
    it without an answer), ``invalid`` (an answer that breaks the schema) and ``truncated``
    (half an answer, ``finish_reason: length``).  Example: ``--fault-rate 500=0.05 --fault-rate 429=0.02``.
``--seed N``
    Seed of the fault draws (default 0): the same seed and requests give the same faults.
``--hang-seconds S``
    How long a ``timeout`` fault holds the connection (default 30).
``--stats-every S``
    Print a stats line every S seconds, and once more on exit (Ctrl-C)::

        stats: 200 requests; status 200=185 429=4 500=9 dropped=2; faults 429=4 500=9 timeout=2

    ``dropped`` counts connections closed without an answer (``timeout`` faults); a hung
    request is counted when it is dropped.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import random
import re
import threading
from collections import Counter
from dataclasses import dataclass
from typing import Any

from _fake_http import BAD_GATEWAY_HTML as BAD_GATEWAY_HTML  # re-export: it used to be defined here
from _fake_http import (
    MODEL_ID,
    FakeHandler,
    FakeService,
    chat_completion,
    content_text,
    error_body,
    estimate_tokens,
    load_json,
    message_chars,
    response_format,
    server_fault_reply,
)

__all__ = [
    "FAULT_KINDS",
    "MODEL_ID",
    "FakeOpenAI",
    "RecordedRequest",
    "build_answer",
    "extract_input_text",
    "is_valid",
]

FAULT_KINDS: tuple[str, ...] = (
    "429",
    "500",
    "503",
    "502_html",
    "timeout",
    "invalid",
    "truncated",
)
INVALID_LABEL = "not-a-label"
DEFAULT_RETRY_AFTER = 0.05

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_TRUE_WORDS = frozenset({"yes", "true", "1"})
_FALSE_WORDS = frozenset({"no", "false", "0"})
_MISSING: Any = object()


@dataclass
class RecordedRequest:
    """One request as the fake server saw and answered it."""

    text: str
    model: str
    schema: dict[str, Any] | None
    status: int
    fault: str | None
    prompt_tokens: int
    completion_tokens: int
    content: str | None
    authorization: str | None


# --------------------------------------------------------------------------- #
# Input text and deterministic answers
# --------------------------------------------------------------------------- #


def extract_input_text(messages: list[Any]) -> str:
    """The input text of a request: the last user message, narrowed to ``<input>``.

    If the last ``user`` message contains ``<input>`` ... ``</input>``, the text
    between the first ``<input>`` and the last ``</input>`` is returned, with one
    leading and one trailing newline removed; otherwise the whole content.
    """
    content = ""
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            content = content_text(message.get("content"))
            break
    start = content.find("<input>")
    end = content.rfind("</input>")
    if start == -1 or end == -1 or end < start + len("<input>"):
        return content
    inner = content[start + len("<input>") : end]
    if inner.startswith("\r\n"):
        inner = inner[2:]
    elif inner.startswith("\n"):
        inner = inner[1:]
    if inner.endswith("\r\n"):
        inner = inner[:-2]
    elif inner.endswith("\n"):
        inner = inner[:-1]
    return inner


def _resolve(schema: Any, root: dict[str, Any]) -> dict[str, Any]:
    """Follow local ``$ref`` pointers (``#/$defs/X``, ``#/definitions/X``)."""
    seen = 0
    while isinstance(schema, dict) and isinstance(schema.get("$ref"), str):
        ref: str = schema["$ref"]
        if not ref.startswith("#") or seen > 32:
            break
        target: Any = root
        for token in ref.lstrip("#").strip("/").split("/"):
            if not token:
                continue
            token = token.replace("~1", "/").replace("~0", "~")
            if isinstance(target, dict) and token in target:
                target = target[token]
            else:
                return {}
        schema = target
        seen += 1
    return schema if isinstance(schema, dict) else {}


def _types(schema: dict[str, Any]) -> list[str]:
    kind = schema.get("type")
    if isinstance(kind, str):
        return [kind]
    if isinstance(kind, list):
        return [k for k in kind if isinstance(k, str)]
    return []


def _split_nullable(schema: dict[str, Any], root: dict[str, Any]) -> tuple[dict[str, Any], bool]:
    """The effective (non-null) schema of a property and whether null is allowed."""
    schema = _resolve(schema, root)
    nullable = False
    branches = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(branches, list):
        resolved = [_resolve(b, root) for b in branches]
        nullable = any(_types(b) == ["null"] for b in resolved)
        non_null = [b for b in resolved if _types(b) != ["null"]]
        schema = non_null[0] if non_null else {"type": "null"}
    types = _types(schema)
    if "null" in types:
        nullable = True
    enum = schema.get("enum")
    if isinstance(enum, list) and None in enum:
        nullable = True
    return schema, nullable


def _text_hash(text: str) -> int:
    return int(hashlib.sha256(text.encode()).hexdigest(), 16)


def _phrase_in(value: str, text: str) -> bool:
    # \b around re.escape(value), written as look-arounds so values that start
    # or end with a non-word character ("c++", "n/a.") still match sensibly.
    pattern = r"(?<!\w)" + re.escape(value) + r"(?!\w)"
    return re.search(pattern, text, re.IGNORECASE) is not None


def _find_field(name: str, text: str) -> str | None:
    """The raw ``name: value`` / ``name = value`` found in the text, if any."""
    name_re = r"[_ ]".join(re.escape(part) for part in name.split("_"))
    match = re.search(r"\b" + name_re + r"\s*[:=]\s*([^,;\n]+)", text, re.IGNORECASE)
    if match is None:
        return None
    return match.group(1).strip()


def _convert(raw: str, kind: str | None, schema: dict[str, Any]) -> Any:
    """Convert a raw field value to ``kind``; ``_MISSING`` when it does not parse."""
    if kind == "integer":
        try:
            return int(raw)
        except ValueError:
            try:
                number = float(raw)
            except ValueError:
                return _MISSING
            return int(number) if math.isfinite(number) and number.is_integer() else _MISSING
    if kind == "number":
        try:
            number = float(raw)
        except ValueError:
            return _MISSING
        return number if math.isfinite(number) else _MISSING
    if kind == "boolean":
        word = raw.lower()
        if word in _TRUE_WORDS:
            return True
        if word in _FALSE_WORDS:
            return False
        return _MISSING
    if kind == "string" or kind is None:
        if schema.get("format") == "date" and not _DATE_RE.fullmatch(raw):
            return _MISSING
        return raw
    return _MISSING


_TYPE_DEFAULTS: dict[str, Any] = {
    "string": "",
    "integer": 0,
    "number": 0.0,
    "boolean": False,
}


def _property_value(name: str, schema: dict[str, Any], text: str, root: dict[str, Any]) -> Any:
    schema, nullable = _split_nullable(schema, root)
    if "const" in schema:
        return schema["const"]
    enum = schema.get("enum")
    if isinstance(enum, list):
        strings = [v for v in enum if isinstance(v, str)]
        for value in strings:
            if _phrase_in(value, text):
                return value
        raw = _find_field(name, text)  # a number or boolean is taken from `name: value`
        for value in enum:
            if raw is not None and not isinstance(value, (str, type(None))) and json.dumps(value) == raw.lower():
                return value
        if nullable:
            return None
        candidates = strings or [v for v in enum if v is not None]
        if not candidates:
            return None
        return candidates[_text_hash(text) % len(candidates)]
    non_null = [k for k in _types(schema) if k != "null"]
    kind = non_null[0] if non_null else None
    if kind is None and not _types(schema) and "properties" in schema:
        kind = "object"
    if kind == "object":
        return _object_value(schema, text, root)
    if kind == "array":
        return None if nullable else []
    if kind is None and _types(schema) == ["null"]:
        return None
    raw = _find_field(name, text)
    if raw is not None:
        value = _convert(raw, kind, schema)
        if value is not _MISSING:
            return value
    if nullable:
        return None
    return _TYPE_DEFAULTS.get(kind or "")


def _object_value(schema: dict[str, Any], text: str, root: dict[str, Any]) -> dict[str, Any]:
    properties = schema.get("properties")
    if not isinstance(properties, dict):
        return {}
    return {
        str(name): _property_value(str(name), _resolve(prop, root), text, root) for name, prop in properties.items()
    }


def build_answer(schema: dict[str, Any], text: str) -> Any:
    """The deterministic, schema-valid answer for ``text`` (see module docs)."""
    return _property_value("", schema, text, schema)


def _invalid_answer(schema: dict[str, Any], text: str) -> Any:
    """A well-formed JSON answer that violates the schema."""
    answer = build_answer(schema, text)
    root = _resolve(schema, schema)
    properties = root.get("properties")
    if not isinstance(answer, dict) or not isinstance(properties, dict):
        return INVALID_LABEL
    for name, prop in properties.items():
        effective, _ = _split_nullable(prop, schema)
        enum = effective.get("enum")
        if isinstance(enum, list):
            bad = INVALID_LABEL
            while bad in enum:
                bad += "-x"
            answer[name] = bad
            return answer
    required = root.get("required")
    if isinstance(required, list):
        for name in required:
            if name in answer:
                del answer[name]
                return answer
    answer[INVALID_LABEL] = INVALID_LABEL  # violates additionalProperties: false
    return answer


def _json_equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return bool(a == b)


def _is_valid(schema: Any, value: Any, root: dict[str, Any]) -> bool:
    schema = _resolve(schema, root)
    branches = schema.get("anyOf", schema.get("oneOf"))
    if isinstance(branches, list) and not any(_is_valid(b, value, root) for b in branches):
        return False
    if "const" in schema and not _json_equal(schema["const"], value):
        return False
    enum = schema.get("enum")
    if isinstance(enum, list) and not any(_json_equal(v, value) for v in enum):
        return False
    types = _types(schema)
    if types and not any(_type_ok(kind, value) for kind in types):
        return False
    if isinstance(value, dict):
        properties = schema.get("properties")
        properties = properties if isinstance(properties, dict) else {}
        required = schema.get("required")
        if isinstance(required, list) and any(name not in value for name in required):
            return False
        if schema.get("additionalProperties") is False and any(k not in properties for k in value):
            return False
        for key, item in value.items():
            if key in properties and not _is_valid(properties[key], item, root):
                return False
    if (
        isinstance(value, list)
        and "items" in schema
        and not all(_is_valid(schema["items"], item, root) for item in value)
    ):
        return False
    is_date = isinstance(value, str) and schema.get("format") == "date"
    return not is_date or _DATE_RE.fullmatch(value) is not None


def _type_ok(kind: str, value: Any) -> bool:
    if kind == "null":
        return value is None
    if kind == "boolean":
        return isinstance(value, bool)
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "string":
        return isinstance(value, str)
    if kind == "array":
        return isinstance(value, list)
    if kind == "object":
        return isinstance(value, dict)
    return True


def is_valid(schema: dict[str, Any], value: Any) -> bool:
    """Whether ``value`` is valid for the (strict-mode subset of) JSON ``schema``."""
    return _is_valid(schema, value, schema)


# --------------------------------------------------------------------------- #
# Faults
# --------------------------------------------------------------------------- #


@dataclass
class _QueuedFault:
    kind: str
    remaining: int
    match: str | None
    retry_after: float | None


def _check_kind(kind: str) -> None:
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {FAULT_KINDS}")


# --------------------------------------------------------------------------- #
# HTTP server
# --------------------------------------------------------------------------- #


class _Handler(FakeHandler):
    server_version = "FakeOpenAI/1.0"
    owned_by = "fake-openai"
    unknown_url_code = "unknown_url"
    models_need_auth = True
    bad_body_message = "Could not read request body"
    max_body_bytes = None

    def do_PUT(self) -> None:
        self.read_body()
        self.send_not_found()

    def do_DELETE(self) -> None:
        self.send_not_found()

    def do_PATCH(self) -> None:
        self.read_body()
        self.send_not_found()


class FakeOpenAI(FakeService):
    """A local OpenAI-compatible chat-completions server with fault injection."""

    _handler = _Handler
    _queue_size = 256
    _thread_name = "fake-openai"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        hang_seconds: float = 30.0,
    ) -> None:
        super().__init__(api_key=api_key, hang_seconds=hang_seconds)
        self.latency = latency
        self._records: list[RecordedRequest] = []
        self._queue: list[_QueuedFault] = []
        self._rates: dict[str, float] = {}
        self._rng = random.Random(0)

    # -- recording --------------------------------------------------------- #

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every request received so far, in completion order."""
        with self._lock:
            return list(self._records)

    def answered(self) -> list[RecordedRequest]:
        """Requests that got a 200 with a complete, schema-valid answer."""
        result: list[RecordedRequest] = []
        for record in self.requests:
            if record.status != 200 or record.fault is not None or record.content is None:
                continue
            if record.schema is not None:
                try:
                    value = json.loads(record.content)
                except ValueError:
                    continue
                if not is_valid(record.schema, value):
                    continue
            result.append(record)
        return result

    def reset(self) -> None:
        """Forget recorded requests and all pending (queued and random) faults."""
        with self._lock:
            self._records.clear()
            self._queue.clear()
            self._rates = {}

    # -- faults ------------------------------------------------------------ #

    def inject(
        self,
        kind: str,
        *,
        times: int = 1,
        match: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        """Apply fault ``kind`` to the next ``times`` requests whose input text contains ``match``."""
        _check_kind(kind)
        if times < 1:
            return
        with self._lock:
            self._queue.append(_QueuedFault(kind, times, match, retry_after))

    def set_fault_rates(self, rates: dict[str, float], seed: int = 0) -> None:
        """Fault each request at random with these probabilities (one seeded draw per request)."""
        for kind, rate in rates.items():
            _check_kind(kind)
            if rate < 0:
                raise ValueError(f"negative fault rate for {kind!r}")
        if sum(rates.values()) > 1.0 + 1e-9:
            raise ValueError("fault rates sum to more than 1")
        with self._lock:
            self._rates = dict(rates)
            self._rng = random.Random(seed)

    def _pick_fault(self, text: str) -> tuple[str | None, float | None]:
        with self._lock:
            for queued in self._queue:
                if queued.match is None or queued.match in text:
                    queued.remaining -= 1
                    if queued.remaining <= 0:
                        self._queue.remove(queued)
                    return queued.kind, queued.retry_after
            if self._rates:
                draw = self._rng.random()
                cumulative = 0.0
                for kind, rate in self._rates.items():
                    cumulative += rate
                    if draw < cumulative:
                        return kind, None
        return None, None

    def stats(self) -> str:
        """One line: the requests so far, by HTTP status (``dropped``: no answer) and by fault."""
        records = self.requests
        statuses = Counter("dropped" if r.status == 0 else str(r.status) for r in records)
        faults = Counter(r.fault for r in records if r.fault is not None)

        def counts(counter: Counter[str]) -> str:
            return " ".join(f"{key}={n}" for key, n in sorted(counter.items())) or "none"

        return f"stats: {len(records)} requests; status {counts(statuses)}; faults {counts(faults)}"

    # -- internals --------------------------------------------------------- #

    def _record(self, record: RecordedRequest) -> None:
        with self._lock:
            self._records.append(record)

    def _handle_chat(self, handler: FakeHandler, raw: bytes) -> None:
        authorization = handler.headers.get("Authorization")
        body = load_json(raw)
        messages: list[Any] = []
        model = ""
        schema: dict[str, Any] | None = None
        wants_json = False
        if isinstance(body, dict):
            if isinstance(body.get("messages"), list):
                messages = body["messages"]
            model = str(body.get("model") or "")
            schema, wants_json = response_format(body)
        text = extract_input_text(messages)
        prompt_tokens = estimate_tokens(message_chars(messages))

        def record(status: int, fault: str | None, content: str | None, completion: int = 0) -> None:
            self._record(
                RecordedRequest(
                    text=text,
                    model=model,
                    schema=schema,
                    status=status,
                    fault=fault,
                    prompt_tokens=prompt_tokens,
                    completion_tokens=completion,
                    content=content,
                    authorization=authorization,
                )
            )

        if not handler.authorized():
            record(401, None, None)
            handler.send_unauthorized()
            return
        if not isinstance(body, dict) or not messages:
            record(400, None, None)
            message = "'messages' is a required property" if isinstance(body, dict) else "Invalid JSON body"
            handler.send_body(400, error_body(message, "invalid_request_error", None))
            return
        if body.get("stream"):
            record(400, None, None)
            message = "stream=true is not supported by FakeOpenAI"
            handler.send_body(400, error_body(message, "invalid_request_error", None))
            return

        fault, retry_after = self._pick_fault(text)

        if fault == "timeout":
            self._hang(handler)
            record(0, fault, None)
            return

        if self.latency > 0:
            self._stopping.wait(self.latency)

        if fault == "429":
            wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
            record(429, fault, None)
            message = f"Rate limit reached for {model or MODEL_ID}. Please try again in {wait}s."
            handler.send_body(
                429,
                error_body(message, "rate_limit_exceeded", "rate_limit_exceeded"),
                headers={"retry-after": f"{wait:g}", "retry-after-ms": str(round(wait * 1000))},
            )
            return
        reply = server_fault_reply(fault)
        if reply is not None:
            record(reply.status, fault, None)
            handler.send_reply(reply)
            return

        finish_reason = "stop"
        if schema is not None:
            answer = _invalid_answer(schema, text) if fault == "invalid" else build_answer(schema, text)
            content = json.dumps(answer)
        elif fault == "invalid":
            content = INVALID_LABEL
        else:
            content = "{}" if wants_json else "ok"
        if fault == "truncated":
            content = content[: len(content) // 2]
            finish_reason = "length"
        completion_tokens = estimate_tokens(len(content))
        response = chat_completion(
            f"chatcmpl-{self._next_id()}",
            model,
            content,
            finish_reason=finish_reason,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
        )
        record(200, fault, content, completion_tokens)
        handler.send_body(200, response)


def _fault_rate(text: str) -> tuple[str, float]:
    """``KIND=RATE`` of ``--fault-rate``."""
    kind, _, rate = text.partition("=")
    try:
        _check_kind(kind)
        value = float(rate)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}; use KIND=RATE, e.g. 500=0.05") from None
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"{text!r}: the rate must be between 0 and 1")
    return kind, value


def _print_stats(fake: FakeOpenAI, every: float, stop: threading.Event) -> None:
    while not stop.wait(every):
        print(fake.stats(), flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description="Deterministic fake OpenAI chat-completions server (127.0.0.1 only), with fault injection.",
        epilog="Example: python tests/openai_server.py --port 8765 --fault-rate 500=0.05 --fault-rate 429=0.02 "
        "--seed 7 --stats-every 10.  The module docstring describes each fault kind.",
    )
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free one)")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds to wait before each answer")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer <key>'")
    parser.add_argument(
        "--fault-rate",
        type=_fault_rate,
        action="append",
        default=[],
        metavar="KIND=RATE",
        help=f"fault this share of requests at random; repeatable; KIND is one of {', '.join(FAULT_KINDS)}",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the random fault draws (default: 0)")
    parser.add_argument(
        "--hang-seconds", type=float, default=30.0, help="how long a `timeout` fault holds the connection (default: 30)"
    )
    parser.add_argument(
        "--stats-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="print requests by status and by fault every SECONDS, and on exit (default: off)",
    )
    args = parser.parse_args(argv)
    rates = dict(args.fault_rate)
    if sum(rates.values()) > 1:
        parser.error("the --fault-rate rates sum to more than 1")

    fake = FakeOpenAI(latency=args.latency, api_key=args.api_key, hang_seconds=args.hang_seconds)
    fake.set_fault_rates(rates, seed=args.seed)
    fake.start(port=args.port)
    print(fake.base_url, flush=True)
    stop = threading.Event()
    if args.stats_every > 0:
        threading.Thread(target=_print_stats, args=(fake, args.stats_every, stop), daemon=True).start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        fake.stop()
        if args.stats_every > 0:
            print(fake.stats(), flush=True)


if __name__ == "__main__":
    main()
