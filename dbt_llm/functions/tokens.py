"""Token estimates of one request before it is sent: the prompt from the messages as sent, the answer
from the expected length of its JSON for the schema (max_tokens only bounds it).

One estimate serves the limiter's token reservation, the budget's reservation and the dry run; the
engine corrects its reservations by what `usage` reports (see attempt._Calibration), the dry run
cannot. `benchmarks/estimate_bench.py` measures it against the test server and a real tokenizer.
"""

from __future__ import annotations

import json
import math
from typing import Any

CHARS_PER_TOKEN = 4.0  # English text and JSON; tokenizers of small models cut finer (about 3.5)
MESSAGE_TOKENS = 3  # the chat format's role markers around each message (OpenAI's; ChatML has 5)
REPLY_TOKENS = 3  # the header of the answer the prompt ends with
STRING_CHARS = 12.0  # a stated string value with its quotes: a name, a city, a short phrase
NULL_CHARS = 4.0
FREE_TEXT_TOKENS = 150  # llm_complete: a short paragraph, unless max_tokens is lower
SCALAR_CHARS = {"integer": 3.0, "number": 5.0, "boolean": 4.5}


def text_tokens(chars: float) -> int:
    return math.ceil(chars / CHARS_PER_TOKEN)


def prompt_tokens(messages: list[dict[str, str]]) -> int:
    return sum(text_tokens(len(m["content"])) + MESSAGE_TOKENS for m in messages) + REPLY_TOKENS


def answer_tokens(schema: dict[str, Any]) -> int:
    return text_tokens(answer_chars(schema))


def answer_chars(schema: dict[str, Any]) -> float:
    """Expected length of the answer's JSON as `json.dumps` writes it. An enum's values weigh alike;
    an array has one item; a field that may be null is null half the time (the text does not
    always state it)."""
    kinds = schema.get("type")
    kinds = kinds if isinstance(kinds, list) else [kinds]
    kind = next((k for k in kinds if k != "null"), "null")
    enum = [v for v in schema.get("enum", []) if v is not None]
    if enum:
        chars = sum(len(json.dumps(v, ensure_ascii=False)) for v in enum) / len(enum)
    elif kind == "object":
        fields = schema.get("properties", {})
        # {"name": value, ...}: the name quoted, ": " after it, ", " between fields.
        chars = 2 + sum(len(json.dumps(n, ensure_ascii=False)) + 2 + answer_chars(f) for n, f in fields.items())
        chars += 2 * max(0, len(fields) - 1)
    elif kind == "array":
        chars = 2 + answer_chars(schema.get("items", {"type": "string"}))
    elif kind == "string":
        chars = STRING_CHARS
    else:
        chars = SCALAR_CHARS.get(kind, NULL_CHARS)
    may_be_null = "null" in kinds or None in schema.get("enum", [])
    return (chars + NULL_CHARS) / 2 if may_be_null else chars
