"""A deterministic, local, fault-injecting fake of the OpenAI chat-completions and Batch APIs.

The server speaks just enough of the OpenAI HTTP API (``POST /v1/chat/completions``,
``POST /v1/embeddings`` (deterministic unit vectors, see ``embedding_of``), ``GET /v1/models`` and
the Batch API below) for SQL-side LLM calls to be tested end to end
without a network.  Answers are a pure function of the request's input text and its
``response_format`` JSON schema, so they are reproducible and always valid for
that schema (unless a fault asks otherwise); a request without a schema gets the free
text ``Reply to: <input text>``, and an array of enum strings holds every value the text
names.  Every request is recorded, and faults (rate limits, server errors, HTML gateways, hung connections, invalid
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
    it without an answer), ``invalid`` (an answer that breaks the schema; drawn per row of a
    packed request, see below), ``truncated`` (half an answer, ``finish_reason: length``) and
    ``invented`` (a schema-valid answer whose free-text string fields hold ``INVENTED_VALUE``, which
    no input text contains: a model guessing instead of answering null).
    Example: ``--fault-rate 500=0.05 --fault-rate 429=0.02``.
``--seed N``
    Seed of the fault draws (default 0): the same seed and requests give the same faults.
``--hang-seconds S``
    How long a ``timeout`` fault holds the connection (default 30).
``--stats-every S``
    Print a stats line every S seconds, and once more on exit (Ctrl-C)::

        stats: 200 requests; status 200=185 429=4 500=9 dropped=2; faults 429=4 500=9 timeout=2

    ``dropped`` counts connections closed without an answer (``timeout`` faults); a hung
    request is counted when it is dropped.
``--batch-delay S``
    How long a batch takes from created to completed (default 0.1; 0 is fine).

A changed model
---------------
``change_answers(match=None)`` makes every later answer for a text containing ``match`` (all texts
when None) another valid one: each top-level enum its next value, a boolean the other one, a
multi-label list the labels it did not hold; packed rows alike.  ``reset()`` undoes it.

Packed requests
---------------
A request may carry several rows: its last ``user`` message holds one block per row, exactly
``<input id="ID">``, a newline, the text, a newline and ``</input>`` (texts may span lines but
must not contain ``</input>``), and its ``json_schema`` is an object whose property names are exactly those ids,
each property the schema the row alone would be asked for.  Its answer is ``{ID:
build_answer(row schema, row text)}`` for every row: each row gets exactly what an unpacked
request for its text would.  ``inject(match=...)`` matches when any row's text contains
``match``.  Faults of the whole request (``429``, ``500``, ``503``, ``502_html``, ``timeout``,
``truncated``) work as for any request, but ``invalid`` is per row: a queued ``invalid`` breaks
only the rows whose text contains ``match`` (``match=None``: the first row), and with fault rates
a packed request draws once for the other kinds (``invalid`` left out of that draw) and, only if
that draw picks no fault, once per row, breaking each row with the ``invalid`` rate.  A broken
row's answer breaks its row schema; the other rows stay valid.  ``inject_batch_line`` treats
packed batch lines the same way.  The record (``RecordedRequest``) of a packed request has
``ids`` (in message order), ``texts`` (the row texts in that order), ``text`` (the texts joined
by newlines), and, when rows were broken, ``fault="invalid"`` and ``invalid_ids``; it is then not
in ``answered()``.  An unpacked request has ``ids=()``, ``texts=(text,)`` and ``invalid_ids=()``.
Usage is counted as for any request: prompt tokens from all the messages, completion tokens
from the whole answer.

Logprobs
--------
A chat request with ``logprobs: true`` gets ``choices[0].logprobs.content[]`` as OpenAI gives it
(``{token, logprob, bytes, top_logprobs}``, ``top_logprobs`` alternatives each): see
``_fake_logprobs``.  Every token is certain unless ``set_logprobs(match, probs)`` gave the rows
whose text contains ``match`` a distribution over their value tokens.  ``fake.logprobs`` says what
a request that asks gets: ``"given"`` (the default), ``"ignored"`` (no logprobs, as some servers do)
or ``"refused"`` (a 400 naming logprobs, as reasoning models do); realtime and batch lines alike.
The record's ``top_logprobs`` is what the request asked for (``None``: no logprobs).

Prefix cache
------------
``usage.prompt_tokens_details.cached_tokens`` follows OpenAI's rule (caching from 1024
tokens on, in 128-token steps) for the fixed part of a prompt: the leading ``system`` (or
``developer``) messages.  When they are at least 1024 tokens (``ceil(chars / 4)``), the
answer carries ``prompt_tokens_details``: ``cached_tokens`` is 0 the first time the server sees
that prefix for that model and, every later time, the prefix's tokens rounded down to a
multiple of 128.  A shorter prefix is never cached and its answers carry no
``prompt_tokens_details`` (clients must read a missing one as 0).  Realtime requests and batch
lines share the cache; only answered (200) requests fill it; ``reset()`` empties it.

Batch API
---------
Files and batches as OpenAI documents them; every URL checks the API key (401):

``POST /v1/files``
    ``multipart/form-data`` with ``purpose=batch`` and ``file`` (a ``.jsonl``, or no filename).
    Answers a File object ``{id: "file-...", object: "file", bytes, created_at, filename,
    purpose, status: "processed", ...}``.  The whole file is checked first, else a 400
    ``{"error": {message: "Line N: ...", type: "invalid_request_error", param: "file", code}}``
    with ``code`` one of ``invalid_file_format``, ``empty_file``, ``invalid_json_line``,
    ``missing_required_parameter`` (``custom_id``, ``method``, ``url``, ``body`` or
    ``body.model``), ``invalid_custom_id``, ``invalid_method`` (not ``POST``), ``invalid_url``
    (not ``/v1/chat/completions``), ``invalid_body``, ``duplicate_custom_id`` and
    ``mismatched_model`` (one model per batch, as OpenAI requires).
``GET /v1/files/{id}``, ``GET /v1/files/{id}/content``, ``DELETE /v1/files/{id}``
    A File object, the stored bytes (inputs, outputs and error files alike), a deletion
    ``{id, object: "file", deleted: true}``; 404 for an unknown id.
``POST /v1/batches``
    ``{input_file_id, endpoint: "/v1/chat/completions", completion_window: "24h", metadata?}``
    (else a 400; an unknown file is a 404).  Answers the Batch object, status ``validating``:
    ``{id: "batch_...", object: "batch", endpoint, errors, input_file_id, completion_window,
    status, output_file_id, error_file_id, created_at, in_progress_at, expires_at,
    finalizing_at, completed_at, failed_at, expired_at, cancelling_at, cancelled_at,
    request_counts: {total, completed, failed}, metadata}``.
``GET /v1/batches/{id}``, ``GET /v1/batches?limit=20&after=batch_...``
    The batch; the list (newest first) ``{object: "list", data, first_id, last_id, has_more}``.
``POST /v1/batches/{id}/cancel``
    Status ``cancelling``, then ``cancelled``; a 409 once the batch has ended.

Nothing runs in the background: each call catches the batches up with ``fake.clock()``
(``time.time`` unless a test swaps in its own).  With ``d = batch_delay``, a batch is
``validating`` for ``d/3``, then ``in_progress`` for ``d/3`` (its lines are answered one by one,
in input order, evenly over that third; ``request_counts`` grows meanwhile; ``total`` is 0
while validating), then ``finalizing`` for ``d/3``, then ``completed``.  The output and error
files exist from then on.  A batch not completed ``batch_window`` seconds (default 24 h) after
it was created ends ``expired``.  A cancelled batch stops answering at once and is ``cancelled``
``d/3`` later.  Ended batches keep what was answered: the output file holds one line per 200,
``{id: "batch_req_...", custom_id, response: {status_code: 200, request_id, body: <the
chat.completion the realtime endpoint gives that body>}, error: null}``; the error file holds a
line per failed request, ``{id, custom_id, response: {status_code: 500 (or 400), request_id,
body: {error}}, error: {code, message}}``, and one per request never run, ``{..., response:
null, error: {code: "batch_expired" | "batch_cancelled", message}}``.  A file that would be
empty is not made (its id stays null).  ``request_counts`` count answered lines only: 200s as
``completed``, others as ``failed``; lines never run are in neither.  The lines of both files
are shuffled (seeded by ``batch_seed`` and the batch id): clients must match by ``custom_id``.

Knobs (attributes, also ``FakeOpenAI(batch_delay=, batch_window=)``): ``batch_delay`` and
``batch_window`` are read when a batch is created, ``batch_seed`` when its files are written,
``clock`` on every call.  Faults:

``inject_batch_line(kind, times=1, match=None)``
    The next ``times`` batch lines whose input text contains ``match`` get ``500`` (an error
    file line), ``invalid`` (a 200 whose answer breaks the schema; on a packed line, only the
    matching rows) or ``truncated`` (half an answer, ``finish_reason: length``); taken when a
    line is answered.  Realtime ``inject()`` and fault rates never touch batch lines.
``inject_batch(kind, times=1, completed=0)``
    The next ``times`` batches created: ``stall`` stays ``in_progress`` forever (it never
    expires; only its first ``completed`` lines get answered; cancel ends it); ``expire``
    ends ``expired`` when it would have completed, its first ``completed`` lines answered and
    the rest ``batch_expired``; ``fail`` ends ``failed`` after validating, with ``errors``
    (``token_limit_exceeded``) and no files.

Records: ``fake.batches`` (``RecordedBatch``: id, status, input_file_id, custom_ids in input
order, request_counts, output/error file ids, output_custom_ids and error_custom_ids in file
order, metadata, fault), ``fake.files`` (``RecordedFile``: id, purpose ``batch`` or
``batch_output``, filename, content, created_at) and ``fake.batch_requests`` (a
``RecordedRequest`` per answered line, with ``batch_id`` and ``custom_id`` set and the same
usage as realtime; ``fake.requests`` holds realtime requests only).  ``batch_answered()`` is
``answered()`` for batch lines.  ``reset()`` forgets batches and files too.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import random
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

from _fake_batches import (
    BATCH_FAULTS,
    DEFAULT_BATCH_DELAY,
    DEFAULT_BATCH_WINDOW,
    BatchService,
    RecordedBatch,
    RecordedFile,
)
from _fake_http import BAD_GATEWAY_HTML as BAD_GATEWAY_HTML  # re-export: it used to be defined here
from _fake_http import (
    MODEL_ID,
    FakeHandler,
    chat_completion_dict,
    content_text,
    error_body,
    estimate_tokens,
    load_json,
    message_chars,
    response_format,
    server_fault_reply,
)
from _fake_logprobs import Probs, logprobs_of

__all__ = [
    "BATCH_FAULTS",
    "BATCH_LINE_FAULTS",
    "FAULT_KINDS",
    "MODEL_ID",
    "FakeOpenAI",
    "RecordedBatch",
    "RecordedFile",
    "RecordedRequest",
    "build_answer",
    "extract_input_text",
    "extract_packed_inputs",
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
    "invented",
)
BATCH_LINE_FAULTS: tuple[str, ...] = ("500", "invalid", "truncated")
INVALID_LABEL = "not-a-label"
DEFAULT_RETRY_AFTER = 0.05
CACHE_MIN_TOKENS = 1024  # OpenAI caches prompt prefixes from 1024 tokens on,
CACHE_INCREMENT = 128  # in steps of 128 tokens

EXTRACT_LEAD = "Extract the fields "  # the extraction question: one line, then `Text: ` and the text
TEXT_LINE = "\nText: "
_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_PACKED_INPUT_RE = re.compile(r'<input id="([^"]+)">\n(.*?)\n</input>', re.DOTALL)
_TRUE_WORDS = frozenset({"yes", "true", "1"})
_FALSE_WORDS = frozenset({"no", "false", "0"})
_MISSING: Any = object()
_LOGPROBS_REFUSED = "logprobs are not supported with this model"


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
    cached_tokens: int = 0  # usage.prompt_tokens_details.cached_tokens of the answer
    batch_id: str | None = None  # set on batch lines (FakeOpenAI.batch_requests)
    custom_id: str | None = None
    texts: tuple[str, ...] = ()  # the row texts, in the order of ``ids`` (unpacked: ``(text,)``)
    ids: tuple[str, ...] = ()  # the row ids of a packed request (unpacked: ``()``)
    invalid_ids: tuple[str, ...] = ()  # the rows an ``invalid`` fault broke (packed requests only)
    top_logprobs: int | None = None  # what the request asked for: None without ``logprobs: true``
    body: Any = None  # the JSON body as received (chat completions)


# --------------------------------------------------------------------------- #
# Input text and deterministic answers
# --------------------------------------------------------------------------- #


def extract_input_text(messages: list[Any]) -> str:
    """The input text of a request: the last user message, narrowed to ``<input>`` or ``Text:``.

    If the last ``user`` message contains ``<input>`` ... ``</input>``, the text
    between the first ``<input>`` and the last ``</input>`` is returned, with one
    leading and one trailing newline removed.  If it is the extraction prompt's question
    (``extract/5``: one line starting ``Extract the fields ``), the text is what follows its
    ``Text: `` line, to the end.  Otherwise the whole content.
    """
    content = _last_user_content(messages)
    line = content.find(TEXT_LINE)
    if content.startswith(EXTRACT_LEAD) and line != -1 and "\n" not in content[:line]:
        return content[line + len(TEXT_LINE) :]
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


def _last_user_content(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return content_text(message.get("content"))
    return ""


def extract_packed_inputs(messages: list[Any]) -> dict[str, str]:
    """The ``<input id="ID">`` blocks of the last user message, id -> text, in message order.

    Each block is exactly ``<input id="ID">``, a newline, the text, a newline and ``</input>``.
    Whether the request is packed also depends on its schema (see "Packed requests" in the module docs).
    """
    return dict(_PACKED_INPUT_RE.findall(_last_user_content(messages)))


def _packed_rows(
    messages: list[Any], schema: dict[str, Any] | None
) -> tuple[dict[str, str], dict[str, dict[str, Any]]]:
    """id -> text and id -> row schema of a packed request; two empty dicts when it is not packed."""
    if schema is None:
        return {}, {}
    blocks = _PACKED_INPUT_RE.findall(_last_user_content(messages))
    texts = dict(blocks)
    if not texts or len(texts) != len(blocks):  # no blocks, or an id twice
        return {}, {}
    root = _resolve(schema, schema)
    properties = root.get("properties")
    if _types(root) != ["object"] or not isinstance(properties, dict) or set(properties) != set(texts):
        return {}, {}
    return texts, {row_id: _row_schema(properties[row_id], schema) for row_id in texts}


def _row_schema(prop: Any, root: dict[str, Any]) -> dict[str, Any]:
    """A row's schema on its own: its property, resolved, with the root's ``$defs`` for its own ``$ref``s."""
    schema = _resolve(prop, root)
    for key in ("$defs", "definitions"):
        if key in root and key not in schema:
            schema = {**schema, key: root[key]}
    return schema


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
        items, _ = _split_nullable(schema.get("items", {}), root)
        labels = [v for v in items.get("enum", []) if isinstance(v, str)]
        if labels:  # a multi-label answer: every label the text names, in the order of the enum
            return [label for label in labels if _phrase_in(label, text)]
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


INVENTED_VALUE = "Atlantis Invented"


def _invented_answer(schema: dict[str, Any], text: str) -> Any:
    """A schema-valid answer whose free-text string fields (no enum, no format) hold a value the text
    does not contain: what a model that guesses instead of answering null says."""
    answer = build_answer(schema, text)
    properties = _resolve(schema, schema).get("properties")
    if not isinstance(answer, dict) or not isinstance(properties, dict):
        return answer
    for name, prop in properties.items():
        effective, _ = _split_nullable(prop, schema)
        kinds = [k for k in _types(effective) if k != "null"]
        if kinds == ["string"] and "enum" not in effective and "format" not in effective:
            answer[name] = INVENTED_VALUE
    return answer


def _changed_answer(schema: dict[str, Any], text: str) -> Any:
    """Another schema-valid answer than ``build_answer``'s: what a model changed behind the same name
    says. Each top-level enum holds the next value of its enum, a boolean the other one, a multi-label
    list the labels it did not hold."""
    answer = build_answer(schema, text)
    properties = _resolve(schema, schema).get("properties")
    if not isinstance(answer, dict) or not isinstance(properties, dict):
        return answer
    for name, prop in properties.items():
        effective, _ = _split_nullable(prop, schema)
        enum = [v for v in effective.get("enum", []) if v is not None]
        items, _ = _split_nullable(effective.get("items", {}), schema)
        labels = [v for v in items.get("enum", []) if isinstance(v, str)]
        if len(enum) > 1 and answer[name] in enum:
            answer[name] = enum[(enum.index(answer[name]) + 1) % len(enum)]
        elif isinstance(answer[name], bool):
            answer[name] = not answer[name]
        elif labels and isinstance(answer[name], list):
            answer[name] = [label for label in labels if label not in answer[name]]
    return answer


EMBEDDING_DIMENSIONS = 32


def embedding_of(text: str, dimensions: int) -> list[float]:
    """A deterministic unit vector for ``text``: equal texts, equal vectors."""
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] + 7 * i) % 251) / 125.0 - 1.0 for i in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    return [round(x / norm, 6) for x in raw]


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


def _check_kind(kind: str, kinds: tuple[str, ...] = FAULT_KINDS) -> None:
    if kind not in kinds:
        raise ValueError(f"unknown fault kind {kind!r}; expected one of {kinds}")


def _take(queue: list[_QueuedFault], texts: tuple[str, ...]) -> _QueuedFault | None:
    """The first queued fault that matches one of ``texts`` (a request's row texts), one use of it spent."""
    for queued in queue:
        if queued.match is None or any(queued.match in text for text in texts):
            queued.remaining -= 1
            if queued.remaining <= 0:
                queue.remove(queued)
            return queued
    return None


# --------------------------------------------------------------------------- #
# One chat request, realtime or a batch line
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class _Chat:
    """What the answer to a chat-completions body depends on."""

    body: Any
    messages: list[Any]
    model: str
    schema: dict[str, Any] | None
    wants_json: bool
    text: str  # the input text; packed: the row texts joined by "\n"
    prompt_tokens: int
    prefix: str  # the text of the leading system (or developer) messages: the fixed part of a prompt
    texts: dict[str, str]  # packed: id -> row text, in message order; unpacked: {}
    row_schemas: dict[str, dict[str, Any]]  # packed: id -> the row's schema; unpacked: {}

    @classmethod
    def parse(cls, body: Any) -> _Chat:
        messages: list[Any] = []
        model = ""
        schema: dict[str, Any] | None = None
        wants_json = False
        if isinstance(body, dict):
            if isinstance(body.get("messages"), list):
                messages = body["messages"]
            model = str(body.get("model") or "")
            schema, wants_json = response_format(body)
        prefix: list[str] = []
        for message in messages:
            if not isinstance(message, dict) or message.get("role") not in ("system", "developer"):
                break
            prefix.append(content_text(message.get("content")))
        texts, row_schemas = _packed_rows(messages, schema)
        return cls(
            body=body,
            messages=messages,
            model=model,
            schema=schema,
            wants_json=wants_json,
            text="\n".join(texts.values()) if texts else extract_input_text(messages),
            prompt_tokens=estimate_tokens(message_chars(messages)),
            prefix="\n".join(prefix),
            texts=texts,
            row_schemas=row_schemas,
        )

    @property
    def top_logprobs(self) -> int | None:
        """The alternatives per token the request asks for; None when it asks for no logprobs."""
        if not isinstance(self.body, dict) or self.body.get("logprobs") is not True:
            return None
        return int(self.body.get("top_logprobs") or 0)

    @property
    def row_texts(self) -> tuple[str, ...]:
        """The texts a fault's ``match`` is looked for in: the row texts, or the one input text."""
        return tuple(self.texts.values()) if self.texts else (self.text,)

    def rows_matching(self, match: str | None) -> tuple[str, ...]:
        """The ids of the packed rows a queued ``invalid`` breaks: those containing ``match``, else the first."""
        if match is None:
            return tuple(self.texts)[:1]
        return tuple(row_id for row_id, text in self.texts.items() if match in text)

    def problem(self) -> str | None:
        """Why the body is a 400, if it is one."""
        if not isinstance(self.body, dict):
            return "Invalid JSON body"
        if not self.messages:
            return "'messages' is a required property"
        if self.body.get("stream"):
            return "stream=true is not supported by FakeOpenAI"
        top = self.body.get("top_logprobs")
        if top is not None and (self.body.get("logprobs") is not True or not 0 <= int(top) <= 20):
            return "top_logprobs must be an integer from 0 to 20, and needs logprobs: true"
        return None


@dataclass(frozen=True)
class _Completion:
    body: dict[str, Any]
    content: str
    completion_tokens: int
    cached_tokens: int


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
        raw = self.read_body()
        if not self.owner._handle_extra(self, "DELETE", raw):
            self.send_not_found()

    def do_PATCH(self) -> None:
        self.read_body()
        self.send_not_found()


class FakeOpenAI(BatchService):
    """A local OpenAI-compatible chat-completions and Batch API server with fault injection."""

    _handler = _Handler
    _queue_size = 256
    _thread_name = "fake-openai"

    def __init__(
        self,
        *,
        latency: float = 0.0,
        api_key: str | None = None,
        hang_seconds: float = 30.0,
        batch_delay: float = DEFAULT_BATCH_DELAY,
        batch_window: float = DEFAULT_BATCH_WINDOW,
    ) -> None:
        super().__init__(api_key=api_key, hang_seconds=hang_seconds, batch_delay=batch_delay, batch_window=batch_window)
        self.latency = latency
        self._records: list[RecordedRequest] = []
        self._batch_records: list[RecordedRequest] = []
        self._embedding_records: list[RecordedRequest] = []
        self._queue: list[_QueuedFault] = []
        self._batch_line_queue: list[_QueuedFault] = []
        self._rates: dict[str, float] = {}
        self._rng = random.Random(0)
        self._seen_prefixes: set[tuple[str, str]] = set()
        self.arrivals: list[float] = []  # monotonic time each chat request arrived, answered or not
        self._changed: list[tuple[str | None, str | None]] = []  # (match, model): see change_answers
        self.logprobs = "given"  # or "ignored", "refused": what a request asking for logprobs gets
        self._logprob_rules: list[tuple[str, Probs, str | None]] = []

    # -- recording --------------------------------------------------------- #

    @property
    def requests(self) -> list[RecordedRequest]:
        """A copy of every realtime request received so far, in completion order (batch lines are not in it)."""
        with self._lock:
            return list(self._records)

    @property
    def batch_requests(self) -> list[RecordedRequest]:
        """Every batch line answered so far (as of now), in the order they were answered."""
        with self._batch_lock:
            self._catch_up()
            with self._lock:
                return list(self._batch_records)

    def answered(self) -> list[RecordedRequest]:
        """Realtime requests that got a 200 with a complete, schema-valid answer."""
        return _valid_answers(self.requests)

    def batch_answered(self) -> list[RecordedRequest]:
        """Batch lines that got a 200 with a complete, schema-valid answer."""
        return _valid_answers(self.batch_requests)

    def reset(self) -> None:
        """Forget recorded requests, pending faults, the prefix cache, and every batch and file."""
        self._reset_batches()
        with self._lock:
            self._records.clear()
            self.arrivals.clear()
            self._batch_records.clear()
            self._embedding_records.clear()
            self._queue.clear()
            self._batch_line_queue.clear()
            self._rates = {}
            self._seen_prefixes.clear()
            self._changed.clear()
            self._logprob_rules.clear()
            self.logprobs = "given"

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

    def change_answers(self, match: str | None = None, *, model: str | None = None) -> None:
        """From now on, texts containing ``match`` (every text: None) get another valid answer (see
        ``_changed_answer``): a model changed behind the same name. Realtime and packed requests alike.
        With ``model``, only requests for that model do (two models that disagree on those texts)."""
        with self._lock:
            self._changed.append((match, model))

    def _changes(self, text: str, model: str | None = None) -> bool:
        with self._lock:
            return any(
                (match is None or match in text) and (only is None or only == model) for match, only in self._changed
            )

    def set_logprobs(self, match: str, probs: Probs, *, model: str | None = None) -> None:
        """The value tokens of rows whose text contains ``match`` get these token probabilities (see
        ``_fake_logprobs``); the first rule that matches a row applies. With ``model``, only in
        requests for that model."""
        with self._lock:
            self._logprob_rules.append((match, dict(probs), model))

    def _probs_of(self, text: str, model: str | None = None) -> Probs | None:
        with self._lock:
            rules = self._logprob_rules
            return next((p for match, p, only in rules if match in text and only in (None, model)), None)

    def _refuses_logprobs(self, chat: _Chat) -> bool:
        return chat.top_logprobs is not None and self.logprobs == "refused"

    def inject_batch_line(self, kind: str, *, times: int = 1, match: str | None = None) -> None:
        """Apply ``kind`` (``500``, ``invalid``, ``truncated``) to the next ``times`` batch lines matching ``match``."""
        _check_kind(kind, BATCH_LINE_FAULTS)
        if times < 1:
            return
        with self._lock:
            self._batch_line_queue.append(_QueuedFault(kind, times, match, None))

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

    def _pick_fault(self, chat: _Chat) -> tuple[str | None, float | None, tuple[str, ...]]:
        """The fault of a request, its retry-after, and the packed rows an ``invalid`` fault breaks."""
        with self._lock:
            queued = _take(self._queue, chat.row_texts)
            if queued is not None:
                if queued.kind == "invalid" and chat.texts:
                    return queued.kind, queued.retry_after, chat.rows_matching(queued.match)
                return queued.kind, queued.retry_after, ()
            if not self._rates:
                return None, None, ()
            if not chat.texts:
                return self._draw(self._rates), None, ()
            kind = self._draw({k: rate for k, rate in self._rates.items() if k != "invalid"})
            invalid_rate = self._rates.get("invalid", 0.0)
            if kind is not None or invalid_rate <= 0:
                return kind, None, ()
            broken = tuple(row_id for row_id in chat.texts if self._rng.random() < invalid_rate)
            return ("invalid" if broken else None), None, broken

    def _draw(self, rates: dict[str, float]) -> str | None:
        """One seeded draw among ``rates`` (call with the lock held)."""
        draw = self._rng.random()
        cumulative = 0.0
        for kind, rate in rates.items():
            cumulative += rate
            if draw < cumulative:
                return kind
        return None

    def stats(self) -> str:
        """One line: the requests so far, by HTTP status (``dropped``: no answer) and by fault."""
        records = self.requests
        statuses = Counter("dropped" if r.status == 0 else str(r.status) for r in records)
        faults = Counter(r.fault for r in records if r.fault is not None)

        def counts(counter: Counter[str]) -> str:
            return " ".join(f"{key}={n}" for key, n in sorted(counter.items())) or "none"

        return f"stats: {len(records)} requests; status {counts(statuses)}; faults {counts(faults)}"

    # -- internals --------------------------------------------------------- #

    def _cached_tokens(self, chat: _Chat) -> int | None:
        """Prompt tokens served from the prefix cache; ``None`` when the prefix is too short to be cached."""
        prefix_tokens = estimate_tokens(len(chat.prefix)) if chat.prefix else 0
        if prefix_tokens < CACHE_MIN_TOKENS:
            return None
        key = (chat.model, hashlib.sha256(chat.prefix.encode()).hexdigest())
        with self._lock:
            seen = key in self._seen_prefixes
            self._seen_prefixes.add(key)
        return prefix_tokens // CACHE_INCREMENT * CACHE_INCREMENT if seen else 0

    # -- embeddings ------------------------------------------------------ #

    @property
    def embedding_requests(self) -> list[RecordedRequest]:
        """Every ``/v1/embeddings`` request so far (``texts``: its inputs; ``prompt_tokens``: its usage)."""
        with self._lock:
            return list(self._embedding_records)

    def _handle_extra(self, handler: FakeHandler, method: str, raw: bytes) -> bool:
        if method == "POST" and handler.route() == "/v1/embeddings":
            self._handle_embeddings(handler, raw)
            return True
        return super()._handle_extra(handler, method, raw)

    def _handle_embeddings(self, handler: FakeHandler, raw: bytes) -> None:
        """Deterministic unit vectors, one per input (``dimensions``, default 32), usage ``ceil(chars / 4)``
        per input. Queued ``429``/``500`` faults (``inject``) apply, matched against the inputs."""
        if not handler.authorized():
            handler.send_unauthorized()
            return
        body = load_json(raw)
        inputs = body.get("input") if isinstance(body, dict) else None
        inputs = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(inputs, list) or not inputs or not all(isinstance(t, str) for t in inputs):
            handler.send_body(
                400, error_body("'input' must be a string or a list of strings", "invalid_request_error", None)
            )
            return
        model = str(body.get("model") or "")
        dimensions = int(body.get("dimensions") or EMBEDDING_DIMENSIONS)
        tokens = sum(estimate_tokens(len(t)) for t in inputs)
        with self._lock:
            queued = _take(self._queue, tuple(inputs))
        fault = None if queued is None else queued.kind
        record = RecordedRequest(
            text="\n".join(inputs),
            model=model,
            schema=None,
            status=200,
            fault=fault,
            prompt_tokens=tokens,
            completion_tokens=0,
            content=None,
            authorization=handler.headers.get("Authorization"),
            texts=tuple(inputs),
        )
        reply = server_fault_reply(fault) if fault not in (None, "429") else None
        if fault == "429" or reply is not None:
            with self._lock:
                self._embedding_records.append(replace(record, status=429 if fault == "429" else reply.status))
            if reply is not None:
                handler.send_reply(reply)
            else:
                handler.send_body(
                    429,
                    error_body("Rate limit reached", "rate_limit_exceeded", "rate_limit_exceeded"),
                    headers={"retry-after": "0.05"},
                )
            return
        with self._lock:
            self._embedding_records.append(record)
        data = [
            {"object": "embedding", "index": i, "embedding": embedding_of(text, dimensions)}
            for i, text in enumerate(inputs)
        ]
        usage = {"prompt_tokens": tokens, "total_tokens": tokens}
        handler.send_body(200, json.dumps({"object": "list", "data": data, "model": model, "usage": usage}).encode())

    def _complete(self, chat: _Chat, fault: str | None, invalid_ids: tuple[str, ...] = ()) -> _Completion:
        """The 200 answer to ``chat``, bent by ``invalid`` (packed: the rows ``invalid_ids``) or ``truncated``."""
        finish_reason = "stop"

        def build(schema: dict[str, Any], text: str) -> Any:
            if fault == "invented":
                return _invented_answer(schema, text)
            return (_changed_answer if self._changes(text, chat.model) else build_answer)(schema, text)

        answer: Any = _MISSING
        if chat.texts:
            answer = {
                row_id: (_invalid_answer if row_id in invalid_ids else build)(chat.row_schemas[row_id], text)
                for row_id, text in chat.texts.items()
            }
            content = json.dumps(answer)
        elif chat.schema is not None:
            bend = _invalid_answer if fault == "invalid" else build
            answer = bend(chat.schema, chat.text)
            content = json.dumps(answer)
        elif fault == "invalid":
            content = INVALID_LABEL
        else:
            content = "{}" if chat.wants_json else f"Reply to: {chat.text}"
        if fault == "truncated":
            content = content[: len(content) // 2]
            finish_reason = "length"
        completion_tokens = estimate_tokens(len(content))
        cached = self._cached_tokens(chat)
        top = chat.top_logprobs
        logprobs = None
        if top is not None and self.logprobs == "given" and answer is not _MISSING and fault != "truncated":
            probs_of = functools.partial(self._probs_of, model=chat.model)
            logprobs = logprobs_of(answer, chat.texts, chat.text, top, probs_of)
        body = chat_completion_dict(
            f"chatcmpl-{self._next_id()}",
            chat.model,
            content,
            finish_reason=finish_reason,
            prompt_tokens=chat.prompt_tokens,
            completion_tokens=completion_tokens,
            cached_tokens=cached,
            logprobs=logprobs,
        )
        return _Completion(body, content, completion_tokens, cached or 0)

    def _handle_chat(self, handler: FakeHandler, raw: bytes) -> None:
        with self._lock:
            self.arrivals.append(time.monotonic())
        authorization = handler.headers.get("Authorization")
        chat = _Chat.parse(load_json(raw))

        def record(
            status: int, fault: str | None, completion: _Completion | None = None, invalid_ids: tuple[str, ...] = ()
        ) -> None:
            recorded = _recorded(chat, status, fault, completion, authorization=authorization, invalid_ids=invalid_ids)
            with self._lock:
                self._records.append(recorded)

        if not handler.authorized():
            record(401, None)
            handler.send_unauthorized()
            return
        problem = chat.problem() or (_LOGPROBS_REFUSED if self._refuses_logprobs(chat) else None)
        if problem is not None:
            record(400, None)
            handler.send_body(400, error_body(problem, "invalid_request_error", None))
            return

        fault, retry_after, invalid_ids = self._pick_fault(chat)

        if fault == "timeout":
            self._hang(handler)
            record(0, fault)
            return

        if self.latency > 0:
            self._stopping.wait(self.latency)

        if fault == "429":
            wait = DEFAULT_RETRY_AFTER if retry_after is None else retry_after
            record(429, fault)
            message = f"Rate limit reached for {chat.model or MODEL_ID}. Please try again in {wait}s."
            handler.send_body(
                429,
                error_body(message, "rate_limit_exceeded", "rate_limit_exceeded"),
                headers={"retry-after": f"{wait:g}", "retry-after-ms": str(round(wait * 1000))},
            )
            return
        reply = server_fault_reply(fault)
        if reply is not None:
            record(reply.status, fault)
            handler.send_reply(reply)
            return

        completion = self._complete(chat, fault, invalid_ids)
        record(200, fault, completion, invalid_ids)
        handler.send_body(200, json.dumps(completion.body).encode())

    def _answer_batch_line(self, batch_id: str, custom_id: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        chat = _Chat.parse(body)

        def record(
            status: int, fault: str | None, completion: _Completion | None = None, invalid_ids: tuple[str, ...] = ()
        ) -> None:
            recorded = _recorded(
                chat, status, fault, completion, batch_id=batch_id, custom_id=custom_id, invalid_ids=invalid_ids
            )
            with self._lock:
                self._batch_records.append(recorded)

        problem = chat.problem() or (_LOGPROBS_REFUSED if self._refuses_logprobs(chat) else None)
        if problem is not None:
            record(400, None)
            return 400, json.loads(error_body(problem, "invalid_request_error", None))
        with self._lock:
            queued = _take(self._batch_line_queue, chat.row_texts)
        fault = None if queued is None else queued.kind
        invalid_ids: tuple[str, ...] = ()
        if queued is not None and queued.kind == "invalid" and chat.texts:
            invalid_ids = chat.rows_matching(queued.match)
        reply = server_fault_reply(fault)
        if reply is not None:
            record(reply.status, fault)
            return reply.status, json.loads(reply.body)
        completion = self._complete(chat, fault, invalid_ids)
        record(200, fault, completion, invalid_ids)
        return 200, completion.body


def _recorded(
    chat: _Chat,
    status: int,
    fault: str | None,
    completion: _Completion | None,
    *,
    authorization: str | None = None,
    batch_id: str | None = None,
    custom_id: str | None = None,
    invalid_ids: tuple[str, ...] = (),
) -> RecordedRequest:
    return RecordedRequest(
        text=chat.text,
        model=chat.model,
        schema=chat.schema,
        status=status,
        fault=fault,
        prompt_tokens=chat.prompt_tokens,
        completion_tokens=0 if completion is None else completion.completion_tokens,
        content=None if completion is None else completion.content,
        authorization=authorization,
        cached_tokens=0 if completion is None else completion.cached_tokens,
        batch_id=batch_id,
        custom_id=custom_id,
        texts=chat.row_texts,
        ids=tuple(chat.texts),
        invalid_ids=invalid_ids,
        top_logprobs=chat.top_logprobs,
        body=chat.body,
    )


def _valid_answers(records: list[RecordedRequest]) -> list[RecordedRequest]:
    """The records of a 200 with a complete, schema-valid answer."""
    result: list[RecordedRequest] = []
    for record in records:
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
        "--batch-delay",
        type=float,
        default=DEFAULT_BATCH_DELAY,
        metavar="SECONDS",
        help=f"how long a batch takes from created to completed (default: {DEFAULT_BATCH_DELAY:g})",
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

    if args.batch_delay < 0:
        parser.error("--batch-delay must not be negative")
    fake = FakeOpenAI(
        latency=args.latency, api_key=args.api_key, hang_seconds=args.hang_seconds, batch_delay=args.batch_delay
    )
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
