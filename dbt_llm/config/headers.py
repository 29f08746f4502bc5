"""The `headers:` key: extra HTTP headers for every request to the provider (gateways such as Portkey
or Helicone, OpenRouter's HTTP-Referer). A value is text, or `{env: NAME}` to read a secret from the
environment when a request is sent, so it never sits in a profile."""

from __future__ import annotations

import os
import re
from typing import Annotated, Any

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict
from pydantic.dataclasses import dataclass

from ..errors import ConfigError
from .values import Refusal, variable_name

# RFC 9110 token characters: what a header name may hold.
_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
# Set by dbt-llm itself: the key comes from `api_key_env`, the rest from the protocol.
_OURS = frozenset(
    {"authorization", "api-key", "x-api-key", "anthropic-version", "content-type", "content-length", "host"}
)


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class FromEnv:
    """`{env: NAME}`: the header's value is the environment variable NAME, read per request."""

    env: Annotated[str, Strict(), AfterValidator(variable_name)] = Field(
        description="name of the environment variable that holds the header's value"
    )


def _header_names(value: Any) -> Any:
    if value is None:  # YAML null: no headers
        return {}
    if not isinstance(value, dict):
        return value
    for name in value:
        if not isinstance(name, str) or not _TOKEN.match(name):
            raise Refusal(f"Header names are letters, digits and -_.; {name!r} is not one.", problem="has a bad name")
        if name.lower() in _OURS:
            raise Refusal(
                f"dbt-llm sets {name} itself (the API key comes from `api_key_env`); remove it from `headers`.",
                problem=f"sets {name}",
            )
    return value


def _values_are_text(value: Any) -> Any:
    """A header value YAML read as a number or a boolean is meant as text."""
    if isinstance(value, bool):
        return str(value).lower()
    return str(value) if isinstance(value, int | float) else value


HeaderValue = Annotated[str, Strict(), BeforeValidator(_values_are_text)] | FromEnv
Headers = Annotated[dict[str, HeaderValue], BeforeValidator(_header_names)]


def resolve(headers: dict[str, HeaderValue]) -> dict[str, str]:
    """The headers to send now: env values read at this moment (a rotated secret is picked up)."""
    sent: dict[str, str] = {}
    for name, value in headers.items():
        if isinstance(value, FromEnv):
            found = os.environ.get(value.env, "").strip()
            if not found:
                raise ConfigError(
                    f"dbt_llm: the environment variable {value.env} (config key `headers.{name}`) is not set. "
                    f"Export it, or change `headers.{name}`."
                )
            sent[name] = found
        else:
            sent[name] = value
    return sent
