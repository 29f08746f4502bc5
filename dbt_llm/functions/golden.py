"""Golden sets: a golden input's expected answer scored against the answer a call gave it.

A pure function of (the call's task, the expected value, the answer); each function's registry entry
(specs.py) picks its scorer here. Classify and filter score 1 for the same label or boolean and 0
otherwise; multi-label classify the Jaccard index of the two label sets (1 when both are empty);
extract the share of the expected fields whose answer is equal once strings
are normalised as grounding normalises them (case and whitespace aside) and numbers compared as
numbers. An expected value that cannot be read (a label that is not one of the call's labels, a field
it does not extract) raises SpecError naming the value and the fix."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import SpecError
from .grounding import normalise

if TYPE_CHECKING:
    from .tasks import Task


@dataclass(frozen=True)
class GoldenScore:
    score: float  # from 0 (wrong) to 1 (right)
    expected: str  # the expected answer in the form the answer is given: a label, true/false, JSON
    answer: str
    wrong_fields: tuple[str, ...] | None = None  # extract: the expected fields the answer got wrong

    @property
    def correct(self) -> bool:
        return self.score == 1.0


def score(task: Task, expected: Any, answer: str) -> GoldenScore:
    """`expected` as the warehouse holds it, decoded from JSON (a string may itself hold JSON: a list,
    an object, true); `answer` the call's cached answer (canonical JSON)."""
    return task.kind.golden_score(task, expected, json.loads(answer))


def label_score(task: Task, expected: Any, answer: dict[str, Any]) -> GoldenScore:
    label = _label(task, expected)
    return GoldenScore(float(label == answer["label"]), label, answer["label"])


def labels_score(task: Task, expected: Any, answer: dict[str, Any]) -> GoldenScore:
    """Multi-label: the Jaccard index of the two label sets (1 when both are empty)."""
    wanted = _label_set(task, expected)
    a, b = set(wanted), set(answer["labels"])
    value = len(a & b) / len(a | b) if a | b else 1.0
    return GoldenScore(value, _canonical(wanted), _canonical(answer["labels"]))


def boolean_score(task: Task, expected: Any, answer: dict[str, Any]) -> GoldenScore:
    wanted = _boolean(task, expected)
    return GoldenScore(float(wanted == answer["answer"]), _bool_text(wanted), _bool_text(answer["answer"]))


def fields_score(task: Task, expected: Any, answer: dict[str, Any]) -> GoldenScore:
    return _fields(task, _object(task, expected), answer)


def _canonical(value: Any) -> str:
    """As tasks.canonical_json writes answers, so equal values read equal."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _decoded(expected: Any) -> Any:
    """A string that holds JSON (a seed's column of `["billing", "bug"]`, `{"city": "Paris"}`) is that JSON."""
    if isinstance(expected, str):
        try:
            return json.loads(expected)
        except ValueError:
            return expected
    return expected


def _label(task: Task, expected: Any) -> str:
    label = expected if isinstance(expected, str) else json.dumps(expected)
    label = label.strip()
    if label not in task.labels:
        raise SpecError(
            f"{task.where}: the golden set expects the label {label!r}, which is not one of the call's labels "
            f"({', '.join(task.labels)}); fix the golden row or the labels."
        )
    return label


def _label_set(task: Task, expected: Any) -> list[str]:
    decoded = _decoded(expected)
    items = decoded if isinstance(decoded, list) else [decoded]
    chosen = {_label(task, item) for item in items}
    return [name for name in task.labels if name in chosen]  # in the order of the labels, as answers are


def _boolean(task: Task, expected: Any) -> bool:
    if isinstance(expected, bool):
        return expected
    if isinstance(expected, str) and expected.strip().lower() in ("true", "false"):
        return expected.strip().lower() == "true"
    raise SpecError(
        f"{task.where}: the golden set of an llm_filter expects true or false (or 'true'/'false'); got {expected!r}."
    )


def _bool_text(value: bool) -> str:
    return "true" if value else "false"


def _object(task: Task, expected: Any) -> dict[str, Any]:
    decoded = _decoded(expected)
    if not isinstance(decoded, dict) or not decoded:
        raise SpecError(
            f"{task.where}: the golden set of an llm_extract expects the JSON of the expected fields, for example "
            f'{{"city": "Paris", "amount": 42}}; got {expected!r}.'
        )
    return decoded


def _fields(task: Task, expected: dict[str, Any], answer: dict[str, Any]) -> GoldenScore:
    known = task.schema["properties"]
    unknown = [name for name in expected if name not in known]
    if unknown:
        raise SpecError(
            f"{task.where}: the golden set expects the field {unknown[0]!r}, which the call does not extract "
            f"({', '.join(known)}); fix the golden row or the fields."
        )
    wrong = tuple(name for name in expected if _normal(expected[name]) != _normal(answer.get(name)))
    value = (len(expected) - len(wrong)) / len(expected)
    return GoldenScore(value, _canonical(expected), _canonical(answer), wrong)


def _normal(value: Any) -> Any:
    """Strings as grounding compares them, numbers as numbers (42 equals 42.0), lists and objects item by item."""
    if isinstance(value, str):
        return normalise(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, list):
        return [_normal(item) for item in value]
    if isinstance(value, dict):
        return {key: _normal(item) for key, item in value.items()}
    return value
