"""What each function adds to a task: the spec keys that change its answer (part of the cache key),
the answer schema and max_tokens. Bad arguments raise SpecError naming the macro and the value."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from .schemas import JsonSchema, fields_to_schema, normalize_schema

COMPLETE_MAX_TOKENS = 1024  # llm_complete without max_tokens: room for a few paragraphs


@dataclass(frozen=True)
class FunctionSpec:
    spec: dict[str, Any]
    schema: JsonSchema  # of the cached answer
    max_tokens: int
    template: str  # the key of prompts.TEMPLATE_VERSIONS


def _object(properties: dict[str, JsonSchema]) -> JsonSchema:
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def labels_of(raw: Any, where: str) -> list[list[Any]]:
    if isinstance(raw, dict):
        pairs = [[k, v] for k, v in raw.items()]
    elif isinstance(raw, list):
        pairs = [[k, None] for k in raw]
    else:
        raise SpecError(f"{where}: `labels` must be a list of strings or a dict label -> description; got {raw!r}.")
    if not pairs:
        raise SpecError(f"{where}: `labels` is empty; give at least one label.")
    names = [p[0] for p in pairs]
    bad = [n for n in names if not isinstance(n, str) or not n.strip()]
    if bad:
        raise SpecError(f"{where}: every label must be a non-empty string; got {bad[0]!r}.")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        more = f" (and {len(dupes) - 1} more)" if len(dupes) > 1 else ""
        raise SpecError(f"{where}: duplicate label {dupes[0]!r}{more}; each label must appear once.")
    for name, desc in pairs:
        if desc is not None and not isinstance(desc, str):
            raise SpecError(f"{where}: the description of label {name!r} must be a string; got {desc!r}.")
    return pairs


def classify(args: dict[str, Any], where: str) -> FunctionSpec:
    pairs = labels_of(args.get("labels"), where)
    names = [p[0] for p in pairs]
    multi = args.get("multi_label") or False
    if not isinstance(multi, bool):
        raise SpecError(f"{where}: `multi_label` must be true or false; got {multi!r}.")
    if not multi:
        schema = _object({"label": {"type": "string", "enum": names}})
        return FunctionSpec({"labels": pairs}, schema, 48 + max(len(n) for n in names), "classify")
    # Any subset, possibly empty: an empty list means no label applies (NULL means no text).
    schema = _object({"labels": {"type": "array", "items": {"type": "string", "enum": names}}})
    max_tokens = 48 + sum(len(n) + 4 for n in names)
    return FunctionSpec({"labels": pairs, "multi_label": True}, schema, max_tokens, "classify_multi")


def extract(args: dict[str, Any], where: str) -> FunctionSpec:
    fields = args.get("fields")
    if isinstance(fields, dict) and fields.get("type") == "object" and "properties" in fields:
        schema = normalize_schema(fields, where)
    else:
        schema = fields_to_schema(fields, where)
    return FunctionSpec({"schema": schema}, schema, 200 + 60 * len(schema["properties"]), "extract")


def filter_(args: dict[str, Any], where: str) -> FunctionSpec:
    question = args.get("question")
    if not isinstance(question, str) or not question.strip():
        raise SpecError(
            f"{where}: `question` must be a non-empty string, a yes/no question about the text, "
            f"for example 'Does the customer ask for a refund?'; got {question!r}."
        )
    return FunctionSpec({"question": question.strip()}, _object({"answer": {"type": "boolean"}}), 24, "filter")


def complete(args: dict[str, Any], where: str) -> FunctionSpec:
    max_tokens = args.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        raise SpecError(f"{where}: `max_tokens` must be a whole number of at least 1; got {max_tokens!r}.")
    # The cached answer is {"text": ...}; the request itself asks for free text, with no schema.
    spec = {"max_tokens": max_tokens}
    return FunctionSpec(spec, _object({"text": {"type": "string"}}), max_tokens or COMPLETE_MAX_TOKENS, "complete")


def embed(args: dict[str, Any], where: str) -> FunctionSpec:
    dimensions = args.get("dimensions")
    if dimensions is not None and (isinstance(dimensions, bool) or not isinstance(dimensions, int) or dimensions < 1):
        raise SpecError(f"{where}: `dimensions` must be a whole number of at least 1; got {dimensions!r}.")
    schema = _object({"embedding": {"type": "array", "items": {"type": "number"}}})
    return FunctionSpec({"dimensions": dimensions}, schema, 0, "embed")


BUILDERS: dict[str, Callable[[dict[str, Any], str], FunctionSpec]] = {
    "classify": classify,
    "extract": extract,
    "filter": filter_,
    "complete": complete,
    "embed": embed,
}
