"""Grounded extraction: a `string` value the input text does not contain is an invented value.

"Information the text does not state is NULL" is checked, not hoped for: after an extraction is
validated, each free-text string (not an enum, not a date, not marked `grounded: false` in a JSON
Schema) must appear in the text once case and whitespace are normalised. One that does not is
nulled (or, as an array item, dropped) and counted in `llm_audit.ungrounded_values`. Numbers,
booleans, enums and dates are exempt: they legitimately normalise what the text says."""

from __future__ import annotations

from typing import Any

from .schemas import JsonSchema


def normalise(text: str) -> str:
    return " ".join(text.casefold().split())


def ground(schema: JsonSchema, answer: Any, text: str) -> tuple[Any, int]:
    """`answer` with every ungrounded string nulled or dropped, and how many there were."""
    return _walk(schema, answer, normalise(text))


def _walk(schema: JsonSchema, value: Any, haystack: str) -> tuple[Any, int]:
    if value is None:
        return None, 0
    kinds = schema.get("type")
    kind = next(k for k in kinds if k != "null") if isinstance(kinds, list) else kinds
    if kind == "object" and isinstance(value, dict):
        out: dict[str, Any] = {}
        count = 0
        for name, sub in schema["properties"].items():
            out[name], n = _walk(sub, value.get(name), haystack)
            if out[name] is None and value.get(name) is not None and not _nullable(sub):
                out[name] = value[name]  # a required, non-nullable field keeps its value (and is counted)
            count += n
        return out, count
    if kind == "array" and isinstance(value, list):
        items: list[Any] = []
        count = 0
        for item in value:
            kept, n = _walk(schema["items"], item, haystack)
            count += n
            if n == 0 or kept is not None:
                items.append(kept)
        return items, count
    if kind == "string" and isinstance(value, str) and _free_text(schema) and normalise(value) not in haystack:
        return None, 1
    return value, 0


def _free_text(schema: JsonSchema) -> bool:
    return "enum" not in schema and "format" not in schema and schema.get("grounded", True) is not False


def _nullable(schema: JsonSchema) -> bool:
    kinds = schema.get("type")
    return isinstance(kinds, list) and "null" in kinds
