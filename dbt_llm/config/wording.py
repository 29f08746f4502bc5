"""pydantic's errors in our words: one line naming the key, what is wrong with it, and the fix."""

from __future__ import annotations

import types
from typing import Annotated, Any, Literal, Union, get_args, get_origin

from annotated_types import Ge, Le
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from ..errors import ConfigError
from .values import PriceEntry, Refusal, price_entries

NOT_A_FIELD = ("unexpected_keyword_argument", "extra_forbidden")


def fields_of(cls: type[Any]) -> dict[str, FieldInfo]:
    """The fields of a pydantic dataclass (mypy sees them as plain dataclasses)."""
    return dict(vars(cls)["__pydantic_fields__"])


def fail(key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"dbt_llm.plugin config: `{key}` {problem}. {fix}")


def config_error(error: ErrorDetails, values: dict[str, Any], fields: dict[str, FieldInfo]) -> tuple[str, str, str]:
    """One pydantic error in our words: the key, what is wrong with it, and the fix."""
    loc = [str(part) for part in error["loc"]]
    key = loc[0]
    value = values[key] if len(loc) == 1 and key in values else error["input"]  # as written, not as converted
    refusal = error.get("ctx", {}).get("error")
    if key == "headers":
        return _header_error(loc, refusal)
    if isinstance(refusal, Refusal):
        return key, refusal.problem or f"is {value!r}", refusal.fix
    if error["type"] in NOT_A_FIELD and len(loc) == 1:
        known = ", ".join(sorted(fields))
        return key, "is not a known key", f"Remove it or fix its spelling; known keys: {known}."
    if len(loc) == 3 and error["type"] not in (*NOT_A_FIELD, "missing"):  # prices.<model>.input or .output
        return ".".join(loc), f"is {value!r}", _expected(fields_of(PriceEntry)[loc[2]])
    if len(loc) > 1:  # a price entry that is not exactly {input, output}
        entry = price_entries(values["prices"])[loc[1]]
        fix = "Give `input` and `output` (optionally `cached_input`, `batch_input`, `batch_output`), USD per 1M tokens."
        return f"prices.{loc[1]}", f"is {entry!r}", fix
    if value is None:  # YAML null, where it means nothing
        default = fields[key].default
        fix = f"Give it a value, or remove the key to get the default, {default!r}."
        return key, "is null (empty in YAML)", fix
    return key, f"is {value!r}", _expected(fields[key])


def _header_error(loc: list[str], refusal: Any) -> tuple[str, str, str]:
    """A header's value is never shown: it may be a secret pasted into the profile."""
    if isinstance(refusal, Refusal) and len(loc) == 1:
        return "headers", refusal.problem or "is not valid", refusal.fix
    if len(loc) == 1:
        return "headers", "is not a mapping", "Use header names and values, e.g. {HTTP-Referer: https://example.com}."
    fix = "Give it text, or {env: NAME} to send the value of the environment variable NAME."
    if isinstance(refusal, Refusal):
        fix = refusal.fix
    return f"headers.{loc[1]}", "is not a header value", fix


def _expected(field: FieldInfo) -> str:
    """The fix for a value of the wrong type or out of range, read off the field's type and bound."""
    kind = _bare(field.annotation)
    if get_origin(kind) is Literal:
        return "Use " + " or ".join(f"`{choice}`" for choice in get_args(kind)) + "."
    if kind in (int, float):
        minimum = next(bound.ge for bound in field.metadata if isinstance(bound, Ge))
        maximum = next((bound.le for bound in field.metadata if isinstance(bound, Le)), None)
        number = "an integer" if kind is int else "a number"
        return (
            f"Set it to {number} >= {minimum}." if maximum is None else f"Set it to {number} in [{minimum}, {maximum}]."
        )
    if kind is str:
        return "Set it to a non-empty string."
    if kind is bool:
        return "Use true or false."
    return "Use a mapping like {gpt-4o-mini: {input: 0.15, output: 0.60}}."


def _bare(annotation: Any) -> Any:
    """The type under `X | None` and `Annotated[X, ...]`."""
    while get_origin(annotation) in (Union, types.UnionType, Annotated):
        annotation = next(arg for arg in get_args(annotation) if arg is not type(None))
    return annotation
