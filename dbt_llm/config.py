"""The plugin config from profiles.yml, parsed once into a typed object."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError
from .pricing import Price

PROVIDERS = ("openai", "local")
LOCAL_DEFAULT_MODEL = "qwen2.5-0.5b"  # mirrors dbt_llm.local.registry, which needs no import here
OnError = Literal["fail", "null"]

_DEFAULTS: dict[str, Any] = {
    "provider": "openai",
    "model": "gpt-4o-mini",
    "base_url": "https://api.openai.com/v1",
    "api_key_env": "OPENAI_API_KEY",
    "max_concurrency": 128,
    "prices": {},
    "max_cost_usd": None,
    "on_error": "fail",
    "schema": "dbt_llm",
    "temperature": 0.0,
    "max_attempts": 5,
    "request_timeout": 60.0,
    "row_timeout": 600.0,
    "max_input_chars": 20000,
    "requests_per_minute": None,
    "progress_interval": 5.0,
    "local_threads": None,
    "local_parallel": 2,
    "model_path": None,
    "tokens_per_minute": None,
    "on_long_input": "truncate",
}

# Keys whose YAML null is a value: no cap, no ceiling, no pinned thread count, no GGUF path,
# no price overrides, and `on_error: null` (keep NULLs), which YAML reads as null unless quoted.
_NULL_MEANS: dict[str, Any] = {
    "max_cost_usd": None,
    "requests_per_minute": None,
    "tokens_per_minute": None,
    "local_threads": None,
    "model_path": None,
    "prices": {},
    "on_error": "null",
}


@dataclass(frozen=True)
class LlmConfig:
    provider: str = "openai"
    model: str = "gpt-4o-mini"
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"
    max_concurrency: int = 128
    prices: dict[str, Price] = field(default_factory=dict)
    max_cost_usd: float | None = None
    on_error: OnError = "fail"
    schema: str = "dbt_llm"
    temperature: float = 0.0
    max_attempts: int = 5
    request_timeout: float = 60.0
    row_timeout: float = 600.0
    max_input_chars: int = 20000
    on_long_input: Literal["truncate", "fail"] = "truncate"
    requests_per_minute: float | None = None
    progress_interval: float = 5.0
    local_threads: int | None = None
    local_parallel: int = 2
    tokens_per_minute: float | None = None

    def api_key(self) -> str:
        """The key, read from the environment only when a request is about to be sent."""
        key = os.environ.get(self.api_key_env, "").strip()
        if not key:
            raise ConfigError(
                f"dbt_llm: the environment variable {self.api_key_env} (config key `api_key_env`) "
                "is not set, and some rows are not in the cache yet. Export the API key in "
                f"{self.api_key_env}, or set `api_key_env` to the variable that holds it."
            )
        return key


def _fail(key: str, problem: str, fix: str) -> ConfigError:
    return ConfigError(f"dbt_llm.plugin config: `{key}` {problem}. {fix}")


def _null(key: str, value: Any) -> Any:
    """The value of a key given as YAML null (`on_error: null`, or `key:` with nothing after it).

    YAML null reaches the plugin as None. It means something for a few keys; for the others
    it is an error, never a silent default.
    """
    if value is not None:
        return value
    if key in _NULL_MEANS:
        return _NULL_MEANS[key]
    default = _DEFAULTS[key]
    raise _fail(key, "is null (empty in YAML)", f"Give it a value, or remove the key to get the default, {default!r}.")


def _number(raw: dict[str, Any], key: str, *, minimum: float, integer: bool = False) -> Any:
    value = raw[key]
    if isinstance(value, str):  # profiles render env_var() to strings
        try:
            value = int(value) if integer else float(value)
        except ValueError:
            pass
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or value < minimum:
        kind = "an integer" if integer else "a number"
        raise _fail(key, f"is {value!r}", f"Set it to {kind} >= {minimum}.")
    return value if integer else float(value)


def _optional(values: dict[str, Any], key: str, *, minimum: float = 1) -> float | None:
    return None if values[key] is None else float(_number(values, key, minimum=minimum))


def _prices(value: Any) -> dict[str, Price]:
    if not isinstance(value, dict):
        raise _fail("prices", f"is {value!r}", "Use a mapping like {gpt-4o-mini: {input: 0.15, output: 0.60}}.")
    prices: dict[str, Price] = {}
    for model, entry in value.items():
        where = f"prices.{model}"
        if not isinstance(entry, dict) or set(entry) != {"input", "output"}:
            raise _fail(where, f"is {entry!r}", "Give exactly `input` and `output`, in USD per 1M tokens.")
        for side in ("input", "output"):
            if isinstance(entry[side], bool) or not isinstance(entry[side], (int, float)) or entry[side] < 0:
                raise _fail(f"{where}.{side}", f"is {entry[side]!r}", "Use a number >= 0 (USD per 1M tokens).")
        prices[str(model)] = Price(float(entry["input"]), float(entry["output"]))
    return prices


def parse_config(plugin_config: dict[str, Any], duckdb_settings: dict[str, Any] | None = None) -> LlmConfig:
    """Validate the plugin's `config:` block.

    dbt-duckdb merges the profile's `settings:` (DuckDB settings) into every plugin's
    config; keys that come from there with the same value are DuckDB's, not ours.
    """
    settings = duckdb_settings or {}
    raw: dict[str, Any] = {}
    for key, value in plugin_config.items():
        if key in _DEFAULTS:
            raw[key] = _null(key, value)
        elif key in settings and settings[key] == value:
            continue
        else:
            known = ", ".join(sorted(_DEFAULTS))
            raise _fail(key, "is not a known key", f"Remove it or fix its spelling; known keys: {known}.")
    values = {**_DEFAULTS, **raw}
    if values["model_path"] is not None:
        if values["provider"] != "local" or "model" in raw:
            raise _fail("model_path", "is set", "Use it only with provider: local, instead of `model`.")
        values["model"] = values["model_path"]
    elif values["provider"] == "local" and "model" not in raw:
        values["model"] = LOCAL_DEFAULT_MODEL

    for key in ("provider", "model", "base_url", "api_key_env", "schema"):
        if not isinstance(values[key], str) or not values[key].strip():
            raise _fail(key, f"is {values[key]!r}", "Set it to a non-empty string.")
    if values["provider"] not in PROVIDERS:
        raise _fail("provider", f"is {values['provider']!r}", f"Use one of: {', '.join(PROVIDERS)}.")
    if not values["base_url"].startswith(("http://", "https://")):
        raise _fail("base_url", f"is {values['base_url']!r}", "Use an http(s) URL such as https://api.openai.com/v1.")
    if not values["api_key_env"].replace("_", "").isalnum():
        raise _fail(
            "api_key_env",
            "does not look like the name of an environment variable",
            "Put the NAME of the variable here (e.g. OPENAI_API_KEY), never the key itself.",
        )
    if not values["schema"].replace("_", "").isalnum():
        raise _fail("schema", f"is {values['schema']!r}", "Use letters, digits and underscores only.")
    if values["on_error"] not in ("fail", "null"):
        raise _fail("on_error", f"is {values['on_error']!r}", "Use `fail` or `null`.")
    if values["on_long_input"] not in ("truncate", "fail"):
        raise _fail(
            "on_long_input",
            f"is {values['on_long_input']!r}",
            "Use `truncate` (send the first max_input_chars characters) or `fail` (record the row as failed).",
        )
    max_cost = _optional(values, "max_cost_usd", minimum=0)
    return LlmConfig(
        provider=values["provider"],
        model=values["model"],
        base_url=values["base_url"].rstrip("/"),
        api_key_env=values["api_key_env"],
        max_concurrency=_number(values, "max_concurrency", minimum=1, integer=True),
        prices=_prices(values["prices"]),
        max_cost_usd=max_cost,
        on_error=values["on_error"],
        schema=values["schema"],
        temperature=_number(values, "temperature", minimum=0),
        max_attempts=_number(values, "max_attempts", minimum=1, integer=True),
        request_timeout=_number(values, "request_timeout", minimum=0.1),
        row_timeout=_number(values, "row_timeout", minimum=0.1),
        max_input_chars=_number(values, "max_input_chars", minimum=1, integer=True),
        on_long_input=values["on_long_input"],
        requests_per_minute=_optional(values, "requests_per_minute"),
        progress_interval=_number(values, "progress_interval", minimum=0.1),
        local_threads=None
        if values["local_threads"] is None
        else _number(values, "local_threads", minimum=1, integer=True),
        local_parallel=_number(values, "local_parallel", minimum=1, integer=True),
        tokens_per_minute=_optional(values, "tokens_per_minute"),
    )
