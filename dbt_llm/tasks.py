"""A task is one prepared macro call: what to ask, how to check the answer, and the
canonical spec whose hash, with the input text, is the cache key."""

from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ValidationError

from . import prompts, tokens
from .errors import SpecError
from .grounding import ground
from .schemas import JsonSchema, answer_model, fields_to_schema, normalize_schema, sql_structure, wire_schema

Function = Literal["classify", "extract"]


def canonical_json(value: Any) -> str:
    """Key order, spacing and escapes fixed, so equal specs give equal bytes in any process."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def cache_key(spec_hash: str, text: str) -> str:
    """Mirrors the SQL `sha256(spec_hash || text)`; spec_hash has a fixed length, so
    the concatenation is unambiguous."""
    return sha256_hex(spec_hash + text)


class InvalidAnswer(Exception):
    """The model's answer does not fit the task's schema; it is retried, never cached."""


@dataclass(frozen=True)
class Task:
    function: Function
    where: str  # e.g. "llm_classify(description)": used in error messages
    model: str
    spec: dict[str, Any]
    spec_json: str
    spec_hash: str
    schema: JsonSchema
    validator: type[BaseModel]
    max_tokens: int
    temperature: float

    @property
    def labels(self) -> dict[str, str | None]:
        return dict(self.spec["labels"]) if self.function == "classify" else {}

    @property
    def sql_structure(self) -> Any:
        return sql_structure(self.schema)

    def messages(self, text: str) -> list[prompts.Message]:
        instructions, examples = self.spec["instructions"], self.spec["examples"]
        if self.function == "classify":
            return prompts.classify_messages(text, self.labels, instructions, examples)
        return prompts.extract_messages(text, list(self.schema["properties"]), instructions, examples)

    def packed_messages(self, texts: dict[str, str]) -> list[prompts.Message]:
        """The messages of a pack (packing.py): each text under its id."""
        instructions, examples = self.spec["instructions"], self.spec["examples"]
        if self.function == "classify":
            return prompts.classify_packed_messages(texts, self.labels, instructions, examples)
        return prompts.extract_packed_messages(texts, list(self.schema["properties"]), instructions, examples)

    def estimate_tokens(self, text: str) -> tuple[int, int]:
        """(prompt, completion) tokens a request for `text` would use: the messages as sent, and the
        expected length of the answer for the schema (see tokens.py). The limiter, the budget and
        the dry run all use this one estimate."""
        return tokens.prompt_tokens(self.messages(text)), self.answer_tokens

    @functools.cached_property
    def answer_tokens(self) -> int:
        """Completion tokens of an answer of the expected length: the same for every text of the task."""
        return tokens.answer_tokens(self.schema)

    @functools.cached_property
    def wire_schema(self) -> JsonSchema:
        """The answer schema as sent to the provider."""
        return wire_schema(self.schema)

    def response_format(self) -> dict[str, Any]:
        return {
            "type": "json_schema",
            "json_schema": {"name": f"llm_{self.function}", "strict": True, "schema": self.wire_schema},
        }

    def ground(self, result: str, text: str) -> tuple[str, int]:
        """An extraction's answer with values the text does not contain nulled, and how many
        (grounding.py); other functions' answers as they are."""
        if self.function != "extract":
            return result, 0
        answer, ungrounded = ground(self.schema, json.loads(result), text)
        return (canonical_json(answer), ungrounded) if ungrounded else (result, 0)

    def parse_answer(self, content: str | None) -> str:
        """Validate the model's content; return the canonical JSON that is cached."""
        if content is None or not content.strip():
            raise InvalidAnswer("the answer was empty")
        try:
            answer = self.validator.model_validate_json(content)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "$"
            raise InvalidAnswer(
                f"the answer does not fit the schema at {loc}: {first['msg']}: {content[:200]!r}"
            ) from None
        return canonical_json(answer.model_dump(mode="json"))


def _labels(raw: Any, where: str) -> list[list[Any]]:
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


def _examples(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or any(not isinstance(e, dict) or set(e) != {"input", "output"} for e in raw):
        raise SpecError(f"{where}: `examples` must be a list of {{'input': ..., 'output': ...}} dicts; got {raw!r}.")
    return [{"input": str(e["input"]), "output": e["output"]} for e in raw]


def build_task(args: dict[str, Any], *, provider: str, default_model: str, temperature: float) -> Task:
    """Turn a macro call's arguments into a Task; bad arguments raise SpecError."""
    function = args.get("function")
    where = str(args.get("where") or f"llm_{function}")
    if function not in ("classify", "extract"):
        raise SpecError(f"{where}: unknown function {function!r}; use classify or extract.")
    model = args.get("model") or default_model
    if not isinstance(model, str):
        raise SpecError(f"{where}: `model` must be a string; got {model!r}.")
    instructions = args.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise SpecError(f"{where}: `instructions` must be a string; got {instructions!r}.")
    examples = _examples(args.get("examples"), where)
    spec: dict[str, Any] = {
        "function": function,
        "provider": provider,
        "model": model,
        "params": {"temperature": temperature},
        "instructions": instructions or None,
        "examples": examples,
        "template": prompts.TEMPLATE_VERSIONS[function],
    }
    if function == "classify":
        pairs = _labels(args.get("labels"), where)
        spec["labels"] = pairs
        names = [p[0] for p in pairs]
        schema: JsonSchema = {
            "type": "object",
            "properties": {"label": {"type": "string", "enum": names}},
            "required": ["label"],
            "additionalProperties": False,
        }
        max_tokens = 48 + max(len(n) for n in names)
    else:
        fields = args.get("fields")
        if isinstance(fields, dict) and fields.get("type") == "object" and "properties" in fields:
            schema = normalize_schema(fields, where)
        else:
            schema = fields_to_schema(fields, where)
        spec["schema"] = schema
        max_tokens = 200 + 60 * len(schema["properties"])
    spec_json = canonical_json(spec)
    return Task(
        function=function,
        where=where,
        model=model,
        spec=spec,
        spec_json=spec_json,
        spec_hash=sha256_hex(spec_json),
        schema=schema,
        validator=answer_model(schema),
        max_tokens=max_tokens,
        temperature=temperature,
    )
