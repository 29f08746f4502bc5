"""The function registry: what each macro function asks, how its answer is checked, and the spec keys
that change its answer (part of the cache key). Adding a function is one FunctionKind subclass and one
entry in FUNCTIONS; a Task asks its kind instead of comparing names. Bad arguments raise SpecError
naming the macro and the value."""

from __future__ import annotations

import dataclasses
import json
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InternalStateError, SpecError
from . import golden, prompts, tokens
from .confidence import Choices
from .schemas import JsonSchema, fields_to_schema, normalize_schema

if TYPE_CHECKING:
    from .tasks import Task

COMPLETE_MAX_TOKENS = 1024  # llm_complete without max_tokens: room for a few paragraphs


@dataclass(frozen=True)
class FunctionSpec:
    spec: dict[str, Any]
    schema: JsonSchema  # of the cached answer
    max_tokens: int
    template: str  # the key of prompts.TEMPLATE_VERSIONS


class FunctionKind(ABC):
    """One function's behaviour. The defaults are those of a function answered with JSON of its schema."""

    embeds: ClassVar[bool] = False  # answered by /embeddings, a vector per text: no chat request, no prompt
    free_text: ClassVar[bool] = False  # asks for text, not JSON: no response_format, one text per request
    grounded: ClassVar[bool] = False  # values the input text does not contain are nulled (grounding.py)
    across_rows: ClassVar[bool] = False  # one answer per group of rows (llm_agg), not one per row

    @abstractmethod
    def build(self, args: dict[str, Any], where: str) -> FunctionSpec:
        """The function's own spec keys, answer schema and max_tokens from the macro's arguments."""

    @abstractmethod
    def messages(self, task: Task, text: str) -> list[prompts.Message]: ...

    def packed_messages(self, task: Task, texts: dict[str, str]) -> list[prompts.Message]:
        raise InternalStateError(f"{task.where}: this function sends one text per request; it is never packed.")

    @property
    def packable(self) -> bool:
        """Whether several texts may share a request: not for free text."""
        return not self.free_text

    @property
    def asks_json(self) -> bool:
        """Whether the request carries the answer schema as its response_format."""
        return not (self.free_text or self.embeds)

    def labels(self, spec: dict[str, Any]) -> dict[str, str | None]:
        return {}

    def choices(self, spec: dict[str, Any]) -> Choices | None:
        """The answers the schema allows, when an answer is one of them: what its confidence is over."""
        return None

    def dimensions(self, spec: dict[str, Any]) -> int | None:
        return None

    def keeps_cut_answers(self, spec: dict[str, Any]) -> bool:
        return False

    def answer_tokens(self, task: Task) -> int:
        """Completion tokens of an answer of the expected length (see tokens.py)."""
        return tokens.answer_tokens(task.schema)

    def golden_score(self, task: Task, expected: Any, answer: Any) -> golden.GoldenScore:
        """A golden input's score (functions/golden.py): `answer` is the decoded cached answer."""
        raise SpecError(f"{task.where}: golden sets score llm_classify, llm_filter and llm_extract calls only.")

    def agrees(self, cached: str, fresh: str) -> bool:
        """Whether a recheck's answer agrees with the cached one: the same label, boolean or set of labels,
        every extracted field equal, the same text (both are canonical JSON, so equal values compare equal)."""
        return bool(json.loads(cached) == json.loads(fresh))


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


def _one_label(where: str, label: str, multi: bool) -> str:
    if multi:
        return (
            f"{where}: `labels` has one label ({label!r}): with multi_label that is a yes/no question. "
            f"Use llm_filter(text, 'is it {label}?') instead, or give at least two labels."
        )
    return (
        f"{where}: `labels` has one label ({label!r}), so every row would get it, and each would still be "
        "paid for. Give at least two labels (for example add 'other'), or ask a yes/no question with llm_filter."
    )


class Classify(FunctionKind):
    def build(self, args: dict[str, Any], where: str) -> FunctionSpec:
        pairs = labels_of(args.get("labels"), where)
        names = [p[0] for p in pairs]
        multi = args.get("multi_label") or False
        if not isinstance(multi, bool):
            raise SpecError(f"{where}: `multi_label` must be true or false; got {multi!r}.")
        if len(names) == 1:  # a forced answer, billed all the same
            raise SpecError(_one_label(where, names[0], multi))
        if not multi:
            schema = _object({"label": {"type": "string", "enum": names}})
            return FunctionSpec({"labels": pairs}, schema, 48 + max(len(n) for n in names), "classify")
        # Any subset, possibly empty: an empty list means no label applies (NULL means no text).
        schema = _object({"labels": {"type": "array", "items": {"type": "string", "enum": names}}})
        max_tokens = 48 + sum(len(n) + 4 for n in names)
        return FunctionSpec({"labels": pairs, "multi_label": True}, schema, max_tokens, "classify_multi")

    def labels(self, spec: dict[str, Any]) -> dict[str, str | None]:
        return dict(spec["labels"])

    def choices(self, spec: dict[str, Any]) -> Choices | None:
        return None if spec.get("multi_label") else Choices.labels("label", [p[0] for p in spec["labels"]])

    def golden_score(self, task: Task, expected: Any, answer: Any) -> golden.GoldenScore:
        return (golden.labels_score if task.multi_label else golden.label_score)(task, expected, answer)

    def messages(self, task: Task, text: str) -> list[prompts.Message]:
        spec = task.spec
        return prompts.classify_messages(
            text, task.labels, spec["instructions"], spec["examples"], multi_label=task.multi_label
        )

    def packed_messages(self, task: Task, texts: dict[str, str]) -> list[prompts.Message]:
        spec = task.spec
        return prompts.classify_packed_messages(
            texts, task.labels, spec["instructions"], spec["examples"], multi_label=task.multi_label
        )


class Extract(FunctionKind):
    grounded = True

    def build(self, args: dict[str, Any], where: str) -> FunctionSpec:
        fields = args.get("fields")
        if isinstance(fields, dict) and fields.get("type") == "object" and "properties" in fields:
            schema = normalize_schema(fields, where)
        else:
            schema = fields_to_schema(fields, where)
        return FunctionSpec({"schema": schema}, schema, 200 + 60 * len(schema["properties"]), "extract")

    def messages(self, task: Task, text: str) -> list[prompts.Message]:
        names = list(task.schema["properties"])
        return prompts.extract_messages(text, names, task.spec["instructions"], task.spec["examples"])

    def packed_messages(self, task: Task, texts: dict[str, str]) -> list[prompts.Message]:
        names = list(task.schema["properties"])
        return prompts.extract_packed_messages(texts, names, task.spec["instructions"], task.spec["examples"])

    def golden_score(self, task: Task, expected: Any, answer: Any) -> golden.GoldenScore:
        """Each expected field after the grounding normalisation."""
        return golden.fields_score(task, expected, answer)


class Filter(FunctionKind):
    def build(self, args: dict[str, Any], where: str) -> FunctionSpec:
        question = args.get("question")
        if not isinstance(question, str) or not question.strip():
            raise SpecError(
                f"{where}: `question` must be a non-empty string, a yes/no question about the text, "
                f"for example 'Does the customer ask for a refund?'; got {question!r}."
            )
        return FunctionSpec({"question": question.strip()}, _object({"answer": {"type": "boolean"}}), 24, "filter")

    def choices(self, spec: dict[str, Any]) -> Choices | None:
        return Choices.booleans("answer")

    def messages(self, task: Task, text: str) -> list[prompts.Message]:
        spec = task.spec
        return prompts.filter_messages(text, spec["question"], spec["instructions"], spec["examples"])

    def packed_messages(self, task: Task, texts: dict[str, str]) -> list[prompts.Message]:
        spec = task.spec
        return prompts.filter_packed_messages(texts, spec["question"], spec["instructions"], spec["examples"])

    def golden_score(self, task: Task, expected: Any, answer: Any) -> golden.GoldenScore:
        return golden.boolean_score(task, expected, answer)


class Complete(FunctionKind):
    free_text = True

    def build(self, args: dict[str, Any], where: str) -> FunctionSpec:
        max_tokens = _positive(args, "max_tokens", where)
        # The cached answer is {"text": ...}; the request itself asks for free text, with no schema.
        schema = _object({"text": {"type": "string"}})
        return FunctionSpec({"max_tokens": max_tokens}, schema, max_tokens or COMPLETE_MAX_TOKENS, "complete")

    def messages(self, task: Task, text: str) -> list[prompts.Message]:
        return prompts.complete_messages(text, task.spec["instructions"])

    def keeps_cut_answers(self, spec: dict[str, Any]) -> bool:
        """With max_tokens: an answer cut there is what was asked for, not a failure."""
        return spec["max_tokens"] is not None

    def answer_tokens(self, task: Task) -> int:
        return min(task.max_tokens, tokens.FREE_TEXT_TOKENS)


class Embed(FunctionKind):
    embeds = True

    def build(self, args: dict[str, Any], where: str) -> FunctionSpec:
        dimensions = _positive(args, "dimensions", where)
        schema = _object({"embedding": {"type": "array", "items": {"type": "number"}}})
        return FunctionSpec({"dimensions": dimensions}, schema, 0, "embed")

    def messages(self, task: Task, text: str) -> list[prompts.Message]:
        return [{"role": "user", "content": text}]  # the input itself; no chat request is sent

    def dimensions(self, spec: dict[str, Any]) -> int | None:
        """The vector length asked for (None: the model's own)."""
        return spec.get("dimensions")

    def answer_tokens(self, task: Task) -> int:
        return 0

    def golden_score(self, task: Task, expected: Any, answer: Any) -> golden.GoldenScore:
        """A golden input's score (functions/golden.py): `answer` is the decoded cached answer."""
        raise SpecError(f"{task.where}: golden sets score llm_classify, llm_filter and llm_extract calls only.")

    def agrees(self, cached: str, fresh: str) -> bool:
        """Vectors agree when they point the same way (cosine similarity of at least 0.99): a provider
        returns the same embedding up to float noise."""
        a, b = json.loads(cached)["embedding"], json.loads(fresh)["embedding"]
        norms = math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b))
        return len(a) == len(b) and norms > 0 and sum(x * y for x, y in zip(a, b, strict=True)) / norms >= 0.99


class Agg(Complete):
    """llm_agg: one answer over a group's texts, built as a tree of partial answers (agg_tree.py).
    Free text like llm_complete; a leaf's request carries its texts, a merge's its children's answers."""

    across_rows = True

    def build(self, args: dict[str, Any], where: str) -> FunctionSpec:
        task = args.get("task")
        if not isinstance(task, str) or not task.strip():
            raise SpecError(
                f"{where}: `task` must be a non-empty string saying what to answer over the group's texts, "
                f"for example 'What do customers complain about? Three bullet points.'; got {task!r}."
            )
        own = super().build(args, where)
        return dataclasses.replace(own, spec={**own.spec, "task": task.strip()}, template="agg")

    def messages(self, task: Task, text: str) -> list[prompts.Message]:
        spec = task.spec
        return prompts.agg_messages(text, spec["task"], spec["instructions"], merge=spec.get("step") == "merge")


def _positive(args: dict[str, Any], name: str, where: str) -> int | None:
    value = args.get(name)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise SpecError(f"{where}: `{name}` must be a whole number of at least 1; got {value!r}.")
    return value


# The registry: a macro's `function` argument names its entry.
FUNCTIONS: dict[str, FunctionKind] = {
    "classify": Classify(),
    "extract": Extract(),
    "filter": Filter(),
    "complete": Complete(),
    "embed": Embed(),
    "agg": Agg(),
}
