"""A task is one prepared macro call: what to ask, how to check the answer, and the
canonical spec whose hash, with the input text, is the cache key."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from ..errors import SpecError
from . import prompts, tokens
from .confidence import TOP_LOGPROBS, Choices, Tokens, confidence
from .grounding import ground
from .schemas import JsonSchema, answer_model, sql_structure, wire_schema
from .specs import FUNCTIONS, FunctionKind


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
    function: str  # a key of specs.FUNCTIONS, written to llm_cache and llm_audit
    where: str  # e.g. "llm_classify(description)": used in error messages
    model: str
    spec: dict[str, Any]
    spec_json: str
    spec_hash: str
    schema: JsonSchema
    validator: type[BaseModel]
    max_tokens: int
    temperature: float
    # Asked of every classify and filter request, so a cached answer keeps its confidence however it
    # was asked for (with_confidence is no part of the key); None: not asked.
    top_logprobs: int | None = None

    @property
    def kind(self) -> FunctionKind:
        """The function's registry entry: what it does differently from the others."""
        return FUNCTIONS[self.function]

    @property
    def embeds(self) -> bool:
        """Answered by the provider's /embeddings route, not a chat completion."""
        return self.kind.embeds

    @property
    def labels(self) -> dict[str, str | None]:
        return self.kind.labels(self.spec)

    @property
    def choices(self) -> Choices | None:
        """The answers an answer is one of (one label, true/false); None when it is free."""
        return self.kind.choices(self.spec)

    def confidence(self, content: str | None, result: str, tokens: Tokens | None, row_id: str = "") -> float | None:
        """The probability the model gave the answer `result` among the allowed ones (confidence.py),
        from the completion's `content` and its token logprobs; None without them."""
        choices = self.choices
        if choices is None or content is None or not tokens:
            return None
        return confidence(content, json.loads(result)[choices.key], tokens, choices, row_id)

    @property
    def sql_structure(self) -> Any:
        return sql_structure(self.schema)

    @property
    def dimensions(self) -> int | None:
        """llm_embed: the vector length asked for (None: the model's own)."""
        return self.kind.dimensions(self.spec)

    @property
    def multi_label(self) -> bool:
        return bool(self.spec.get("multi_label"))

    @property
    def packable(self) -> bool:
        """Whether several texts may share a request: not for free text."""
        return self.kind.packable

    def messages(self, text: str) -> list[prompts.Message]:
        return self.kind.messages(self, text)

    def packed_messages(self, texts: dict[str, str]) -> list[prompts.Message]:
        """The messages of a pack (packing.py): each text under its id."""
        return self.kind.packed_messages(self, texts)

    def estimate_tokens(self, text: str) -> tuple[int, int]:
        if self.embeds:
            return tokens.text_tokens(len(text)), 0
        return self._estimate_chat(text)

    def _estimate_chat(self, text: str) -> tuple[int, int]:
        """(prompt, completion) tokens a request for `text` would use: the messages as sent, and the
        expected length of the answer for the schema (see tokens.py). The limiter, the budget and
        the dry run all use this one estimate."""
        return tokens.prompt_tokens(self.messages(text)), self.answer_tokens

    @functools.cached_property
    def answer_tokens(self) -> int:
        """Completion tokens of an answer of the expected length: the same for every text of the task."""
        return self.kind.answer_tokens(self)

    @property
    def keeps_cut_answers(self) -> bool:
        """llm_complete with max_tokens: an answer cut there is what was asked for, not a failure."""
        return self.kind.keeps_cut_answers(self.spec)

    @functools.cached_property
    def wire_schema(self) -> JsonSchema:
        """The answer schema as sent to the provider."""
        return wire_schema(self.schema)

    def response_format(self) -> dict[str, Any] | None:
        if not self.kind.asks_json:
            return None  # free text; an embedding has no chat request
        return {
            "type": "json_schema",
            "json_schema": {"name": f"llm_{self.function}", "strict": True, "schema": self.wire_schema},
        }

    def _vector(self, content: str) -> list[float]:
        try:
            vector = json.loads(content)
        except ValueError:
            raise InvalidAnswer(f"the embedding is not JSON: {content[:200]!r}") from None
        if (
            not isinstance(vector, list)
            or not vector
            or not all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in vector)
        ):
            raise InvalidAnswer(f"the embedding is not a list of finite numbers: {content[:200]!r}")
        if self.dimensions is not None and len(vector) != self.dimensions:
            raise InvalidAnswer(f"the embedding has {len(vector)} dimensions, not the {self.dimensions} asked for")
        return [float(x) for x in vector]

    def ground(self, result: str, text: str) -> tuple[str, int]:
        """An extraction's answer with values the text does not contain nulled, and how many
        (grounding.py); other functions' answers as they are."""
        if not self.kind.grounded:
            return result, 0
        answer, ungrounded = ground(self.schema, json.loads(result), text)
        return (canonical_json(answer), ungrounded) if ungrounded else (result, 0)

    def parse_answer(self, content: str | None) -> str:
        """Validate the model's content; return the canonical JSON that is cached."""
        if content is None or not content.strip():
            raise InvalidAnswer("the answer was empty")
        if self.kind.free_text:
            return canonical_json({"text": content.strip()})
        if self.embeds:
            return canonical_json({"embedding": self._vector(content)})
        try:
            answer = self.validator.model_validate_json(content)
        except ValidationError as exc:
            first = exc.errors()[0]
            loc = ".".join(str(p) for p in first["loc"]) or "$"
            raise InvalidAnswer(
                f"the answer does not fit the schema at {loc}: {first['msg']}: {content[:200]!r}"
            ) from None
        value = answer.model_dump(mode="json")
        if self.multi_label:  # a set: each label once, in the order of the labels
            chosen = set(value["labels"])
            value["labels"] = [name for name in self.labels if name in chosen]
        return canonical_json(value)


def _examples(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or any(not isinstance(e, dict) or set(e) != {"input", "output"} for e in raw):
        raise SpecError(f"{where}: `examples` must be a list of {{'input': ..., 'output': ...}} dicts; got {raw!r}.")
    return [{"input": str(e["input"]), "output": e["output"]} for e in raw]


def build_task(
    args: dict[str, Any], *, provider: str, default_model: str, temperature: float, logprobs: bool = True
) -> Task:
    """Turn a macro call's arguments into a Task; bad arguments raise SpecError. `logprobs`: ask for
    them where an answer has a confidence (the plugin config's `logprobs`)."""
    function = args.get("function")
    where = str(args.get("where") or f"llm_{function}")
    if not isinstance(function, str) or function not in FUNCTIONS:
        raise SpecError(f"{where}: unknown function {function!r}; use one of {', '.join(FUNCTIONS)}.")
    model = args.get("model") or default_model
    if not isinstance(model, str):
        raise SpecError(f"{where}: `model` must be a string; got {model!r}.")
    instructions = args.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise SpecError(f"{where}: `instructions` must be a string; got {instructions!r}.")
    examples = _examples(args.get("examples"), where)
    own = FUNCTIONS[function].build(args, where)
    spec: dict[str, Any] = {
        "function": function,
        "provider": provider,
        "model": model,
        "params": {"temperature": temperature},
        "instructions": instructions or None,
        "examples": examples,
        "template": prompts.TEMPLATE_VERSIONS[own.template],
        **own.spec,
    }
    spec_json = canonical_json(spec)
    return Task(
        function=function,
        where=where,
        model=model,
        spec=spec,
        spec_json=spec_json,
        spec_hash=sha256_hex(spec_json),
        schema=own.schema,
        validator=answer_model(own.schema),
        max_tokens=own.max_tokens,
        temperature=temperature,
        top_logprobs=TOP_LOGPROBS if logprobs and FUNCTIONS[function].choices(own.spec) is not None else None,
    )
