"""The value types of the plugin's keys: text from env_var() read as numbers and booleans, the checks of
URLs and names, and the `prices:` table; a check refuses with `Refusal`, whose fix the error shows."""

from __future__ import annotations

import contextlib
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, GetPydanticSchema, Strict
from pydantic.dataclasses import dataclass

from ..pricing import Price


class Refusal(ValueError):
    """A validator's own wording: what is wrong (by default `is <value>`) and the fix."""

    def __init__(self, fix: str, problem: str | None = None) -> None:
        super().__init__(fix)
        self.fix = fix
        self.problem = problem


def number_from_text(value: Any) -> Any:
    """Profiles render env_var() to strings: '8' is 8 and '2.5' is 2.5; other text stays text (and fails)."""
    if isinstance(value, str):
        for number in (int, float):
            with contextlib.suppress(ValueError):
                return number(value)
    return value


def bool_from_text(value: Any) -> Any:
    """env_var() renders 'true' and 'false' as text."""
    if isinstance(value, str) and value.strip().lower() in ("true", "false"):
        return value.strip().lower() == "true"
    return value


def filled(value: str) -> str:
    if not value.strip():
        raise Refusal("Set it to a non-empty string.")
    return value


def http_root(value: str) -> str:
    if not value.startswith(("http://", "https://")):
        raise Refusal("Use an http(s) URL such as https://api.openai.com/v1.")
    return value.rstrip("/")  # requests go to <base_url>/chat/completions


def dated_version(value: str) -> str:
    """Azure's api-version is a date, optionally -preview: anything else is a typo Azure answers with a 404."""
    if not re.fullmatch(r"\d{4}-\d{2}-\d{2}(-preview)?", value):
        raise Refusal("Use an Azure OpenAI api-version such as 2024-10-21 (or a dated -preview).")
    return value


def variable_name(value: str) -> str:
    if not value.replace("_", "").isalnum():
        raise Refusal(  # not `is <value>`: a key pasted here would end up in dbt's logs
            "Put the NAME of the variable here (e.g. OPENAI_API_KEY), never the key itself.",
            problem="does not look like the name of an environment variable",
        )
    return value


def identifier(value: str) -> str:
    if not value.replace("_", "").isalnum():
        raise Refusal("Use letters, digits and underscores only.")
    return value


def null_on_error(value: Any) -> Any:
    return "null" if value is None else value  # `on_error: null` unquoted, as the README writes it, is YAML null


# Strict after the text conversion: a boolean is not a number, and 2.5 is not an integer.
Int = Annotated[int, Strict(), BeforeValidator(number_from_text)]
Float = Annotated[float, Strict(), BeforeValidator(number_from_text)]
Text = Annotated[str, Strict(), AfterValidator(filled)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class PriceEntry:
    """One model's entry under `prices:`, as written in the profile."""

    input: Float = Field(ge=0, description="USD per 1M input (prompt) tokens")
    output: Float = Field(ge=0, description="USD per 1M output (completion) tokens")
    cached_input: Float | None = Field(
        default=None, ge=0, description="USD per 1M prompt tokens the provider served from its prefix cache"
    )
    batch_input: Float | None = Field(default=None, ge=0, description="USD per 1M input tokens in batch mode")
    batch_output: Float | None = Field(default=None, ge=0, description="USD per 1M output tokens in batch mode")
    cache_write_input: Float | None = Field(
        default=None, ge=0, description="USD per 1M prompt tokens written to the provider's cache; null: 1.25x input"
    )


def price_entries(value: Any) -> Any:
    """YAML null means no overrides; a model name that YAML read as a number is still a name."""
    if value is None:
        return {}
    return {str(model): entry for model, entry in value.items()} if isinstance(value, dict) else value


def as_prices(entries: dict[str, PriceEntry]) -> dict[str, Price]:
    return {
        model: Price(
            entry.input,
            entry.output,
            entry.cached_input,
            entry.batch_input,
            entry.batch_output,
            entry.cache_write_input,
        )
        for model, entry in entries.items()
    }


# Typed as the table the runtime uses; validated as entries that refuse other keys and negative prices.
Prices = Annotated[
    dict[str, Price],
    GetPydanticSchema(lambda _source, handler: handler(dict[str, PriceEntry])),
    BeforeValidator(price_entries),
    AfterValidator(as_prices),
]
