"""The plugin config from profiles.yml, parsed once into a typed, frozen object.

`LlmConfig` is a pydantic dataclass: each key is written once, with its default, meaning and range.
`parse_config` turns pydantic's first error into one line of our own that names the key and the fix.
"""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError
from pydantic.dataclasses import dataclass

from ..errors import ConfigError, SpecError
from .headers import Headers, resolve
from .values import (
    Float,
    Int,
    Prices,
    Text,
    bool_from_text,
    dated_version,
    http_root,
    identifier,
    null_on_error,
    variable_name,
)
from .wording import NOT_A_FIELD, config_error, fail, fields_of

LOCAL_DEFAULT_MODEL = "qwen2.5-coder-1.5b"  # mirrors dbt_llm.local.registry, which needs no import here
LOCAL_EMBEDDING_MODEL = "nomic-embed-text-v1.5"  # the same: registry.DEFAULT_EMBEDDING_MODEL
# provider anthropic: its own defaults where the profile does not set the key.
ANTHROPIC_DEFAULT_MODEL = "claude-haiku-4-5"
ANTHROPIC_BASE_URL = "https://api.anthropic.com"
ANTHROPIC_KEY_ENV = "ANTHROPIC_API_KEY"
ANTHROPIC_MAX_TEMPERATURE = 1.0
AZURE_API_VERSION = "2024-10-21"  # Azure OpenAI's current GA data-plane version (realtime and Batch API)
OnError = Literal["fail", "null"]  # `null`: keep NULLs where rows got no valid answer
Mode = Literal["realtime", "batch"]  # `batch`: the provider's Batch API


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class LlmConfig:
    """The plugin's `config:` block in profiles.yml, one field per key.

    YAML null is a value only where the type allows None, for `prices` (no overrides) and for
    `on_error` (keep NULLs); anywhere else it fails, naming the default.
    """

    provider: Literal["openai", "azure", "anthropic", "local"] = Field(
        default="openai",
        description="`openai`: any OpenAI-compatible chat-completions endpoint; `azure`: Azure OpenAI deployments "
        "(`model` is the deployment name); `anthropic`: Anthropic's Messages API (Claude); `local`: the embedded model",
    )
    # Before `model`, which gets its value: a bad path is reported under its own key.
    model_path: Text | None = Field(
        default=None, description="with provider local, a GGUF file to run instead of a `model` name; null: not set"
    )
    model: Text = Field(
        default="gpt-4o-mini",
        description=f"model used when a macro does not pass `model=` ({LOCAL_DEFAULT_MODEL} with provider local, "
        f"{ANTHROPIC_DEFAULT_MODEL} with provider anthropic)",
    )
    embedding_model: Text = Field(
        default="text-embedding-3-small",
        description=f"model of llm_embed when it does not pass `model=` ({LOCAL_EMBEDDING_MODEL} with provider local)",
    )
    base_url: Annotated[Text, AfterValidator(http_root)] = Field(
        default="https://api.openai.com/v1",
        description="endpoint root; requests go to <base_url>/chat/completions (provider azure: the resource "
        "endpoint https://<resource>.openai.azure.com, no default; provider anthropic: the API root, default "
        f"{ANTHROPIC_BASE_URL}, requests go to <base_url>/v1/messages)",
    )
    api_version: Annotated[Text, AfterValidator(dated_version)] = Field(
        default=AZURE_API_VERSION, description="with provider azure, the `api-version` of every request"
    )
    api_key_env: Annotated[Text, AfterValidator(variable_name)] = Field(
        default="OPENAI_API_KEY",
        description="name of the environment variable that holds the API key (never the key itself); "
        "ANTHROPIC_API_KEY with provider anthropic",
    )
    headers: Headers = Field(
        default_factory=dict,
        description="extra HTTP headers sent on every request (gateways); a value is text or {env: NAME}, "
        "read from the environment per request; never logged",
    )
    max_concurrency: Int = Field(
        default=128,
        ge=1,
        description="most requests in flight at once, shared by all dbt threads; the limiter adapts below it",
    )
    prices: Prices = Field(
        default_factory=dict,
        description="USD per 1M input/output tokens, per model name, over the built-in table; null: none",
    )
    max_cost_usd: Float | None = Field(
        default=None, ge=0, description="stop calling once this dbt invocation spent this much (USD); null: no cap"
    )
    on_error: Annotated[OnError, BeforeValidator(null_on_error)] = Field(
        default="fail",
        description="`fail`: after all rows ran, fail the model if any row got no valid answer; `null`: keep NULLs",
    )
    schema: Annotated[Text, AfterValidator(identifier)] = Field(
        default="dbt_llm", description="schema of llm_cache, llm_audit and llm_errors"
    )
    temperature: Float = Field(default=0.0, ge=0, description="sampling temperature (part of the cache key)")
    max_attempts: Int = Field(default=5, ge=1, description="tries per row on 429, 5xx, timeouts and invalid answers")
    request_timeout: Float = Field(
        default=60.0, ge=0.1, description="most seconds a request may take before it is cut and retried"
    )
    row_timeout: Float = Field(
        default=600.0,
        ge=0.1,
        description="most seconds one row may spend on retries, from its first request; then it fails",
    )
    max_input_chars: Int = Field(
        default=20000, ge=1, description="longest text sent; longer texts are cut or fail (see on_long_input)"
    )
    on_long_input: Literal["truncate", "fail"] = Field(
        default="truncate",
        description="`truncate`: send the first max_input_chars characters; `fail`: fail the row with no call",
    )
    requests_per_minute: Float | None = Field(
        default=None,
        ge=1,
        description="ceiling on requests a minute; null: only what the provider's headers and 429s teach",
    )
    progress_interval: Float = Field(
        default=5.0, ge=0.1, description="seconds between progress lines in dbt's log during long runs"
    )
    local_threads: Int | None = Field(
        default=None, ge=1, description="CPU threads of the embedded model; null: half the CPUs"
    )
    local_parallel: Int = Field(
        default=2, ge=1, description="requests the embedded model answers at once (llama.cpp slots)"
    )
    tokens_per_minute: Float | None = Field(
        default=None,
        ge=1,
        description="ceiling on tokens a minute; null: only what the provider's headers and 429s teach",
    )
    mode: Mode = Field(
        default="realtime",
        description="`realtime`: each request answered at once; `batch`: a model's uncached rows go to the "
        "provider's Batch API at half price (dbt var dbt_llm_mode and meta dbt_llm.mode override it)",
    )
    batch_timeout: Float = Field(
        default=14400.0,
        ge=1,
        description="seconds a run waits for its batch jobs; then the model fails naming them, writes nothing, "
        "and the next run collects them",
    )
    batch_fallback: Mode = Field(
        default="realtime",
        description="how failed, invalid and expired batch lines are retried: `realtime` (at once, list price) "
        "or `batch` (a follow-up batch job, half price, up to max_attempts)",
    )
    batch_poll_interval: Float = Field(
        default=5.0, ge=0.01, description="seconds before the first poll of a batch job; doubled up to 60"
    )
    rows_per_request: Int = Field(
        default=1,
        ge=1,
        le=64,
        description="distinct texts sent in one request (the macro argument of the same name overrides it); "
        "above 1 the fixed prompt is paid once per request, not per row",
    )
    recheck: Int = Field(
        default=0,
        ge=0,
        description="cached rows of each call re-asked on every run, bypassing the cache, to measure agreement "
        "(llm_audit.recheck_rows, recheck_agree; the dbt var dbt_llm_recheck and meta dbt_llm.recheck override it)",
    )
    cascade_target: Float = Field(
        default=0.95,
        ge=0.01,
        le=1,
        description="share of golden inputs on which a cascade with escalate_below='auto' agrees with its "
        "escalate_to model (the macro argument of the same name overrides it)",
    )
    logprobs: Annotated[bool, Strict(), BeforeValidator(bool_from_text)] = Field(
        default=True,
        description="ask llm_classify and llm_filter requests for token logprobs, the source of with_confidence; "
        "false for an endpoint whose Batch API refuses them (realtime requests stop asking by themselves)",
    )

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

    def request_headers(self) -> dict[str, str]:
        """The `headers:` to send now, env values read at this moment."""
        return resolve(self.headers)


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ModelSettings:
    """What one dbt model sets for itself, `config(meta={'dbt_llm': {...}})`: keys of LlmConfig, checked
    by the same types. None: not set, the profile's applies (`on_error: none` means `null`, as there)."""

    on_error: Annotated[OnError | None, BeforeValidator(null_on_error)] = Field(
        default=None, description="as the profile's `on_error`, for this model"
    )
    model: Text | None = Field(default=None, description="model used when a macro does not pass `model=`")
    max_cost_usd: Float | None = Field(
        default=None, ge=0, description="stop calling for this model once it spent this much (USD), under the run's cap"
    )
    mode: Mode | None = Field(default=None, description="as the profile's `mode`, for this model")
    recheck: Int | None = Field(default=None, ge=0, description="as the profile's `recheck`, for this model")


_VALIDATOR = TypeAdapter(LlmConfig)
_SETTINGS_VALIDATOR = TypeAdapter(ModelSettings)


_FIELDS = fields_of(LlmConfig)
SETTINGS_KEYS = tuple(fields_of(ModelSettings))


def parse_config(plugin_config: dict[str, Any], duckdb_settings: dict[str, Any] | None = None) -> LlmConfig:
    """Validate the plugin's `config:` block.

    dbt-duckdb merges the profile's `settings:` (DuckDB settings) into every plugin's
    config; keys that come from there with the same value are DuckDB's, not ours.
    """
    settings = duckdb_settings or {}
    values = {
        key: value
        for key, value in plugin_config.items()
        if key in _FIELDS or key not in settings or settings[key] != value
    }
    try:
        config = _VALIDATOR.validate_python(_azure_defaults(_with_defaults(_with_model(values))))
    except ValidationError as exc:
        errors = exc.errors()
    else:
        _check_provider(config)
        return config
    # Raised outside the `except`: pydantic's multi-line dump (with the values) is not chained to ours.
    unknown = [error for error in errors if error["type"] in NOT_A_FIELD and len(error["loc"]) == 1]
    raise fail(*config_error((unknown or errors)[0], values, _FIELDS))


SETTINGS_FIX = "Use config(meta={'dbt_llm': {'on_error': 'null', 'model': '...', 'max_cost_usd': 1.0}})."


def parse_model_settings(values: dict[str, Any], where: str) -> ModelSettings:
    """A model's meta `dbt_llm` dict, validated like the profile's keys; SpecError names the key and the fix."""
    try:
        return _SETTINGS_VALIDATOR.validate_python(values)
    except ValidationError as exc:
        errors = exc.errors()
    unknown = sorted(str(e["loc"][0]) for e in errors if e["type"] in NOT_A_FIELD and len(e["loc"]) == 1)
    if unknown:
        known = ", ".join(SETTINGS_KEYS)
        raise SpecError(f"{where}: meta `dbt_llm` has unknown key(s) {unknown}; known: {known}. {SETTINGS_FIX}")
    key, problem, fix = config_error(errors[0], values, fields_of(ModelSettings))
    raise SpecError(f"{where}: meta dbt_llm.{key} {problem}. {fix}")


def _with_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """provider anthropic has its own API root, key variable and model where the profile sets none."""
    if values.get("provider") != "anthropic":
        return values
    defaults = {"base_url": ANTHROPIC_BASE_URL, "api_key_env": ANTHROPIC_KEY_ENV, "model": ANTHROPIC_DEFAULT_MODEL}
    return {**defaults, **values}


def _check_provider(config: LlmConfig) -> None:
    """What a provider's API refuses for every request is refused here, once, before any row is sent."""
    if config.provider == "anthropic" and config.temperature > ANTHROPIC_MAX_TEMPERATURE:
        raise fail(
            "temperature",
            f"is {config.temperature:g}, above 1, with provider anthropic",
            "Claude's temperature ranges from 0 to 1: set `temperature` to at most 1.",
        )


def _with_model(values: dict[str, Any]) -> dict[str, Any]:
    """provider local has its own default models; `model_path` names a GGUF file instead of `model`."""
    path = values.get("model_path")
    if path is not None:
        if values.get("provider") != "local" or "model" in values:
            raise fail("model_path", "is set", "Use it only with provider: local, instead of `model`.")
        values = {**values, "model": path}
    if values.get("provider") == "local":
        return {"model": LOCAL_DEFAULT_MODEL, "embedding_model": LOCAL_EMBEDDING_MODEL, **values}
    return values


def _azure_defaults(values: dict[str, Any]) -> dict[str, Any]:
    """provider azure: no endpoint is everyone's, so `base_url` must be given; the key's usual variable."""
    if values.get("provider") != "azure":
        return values
    base_url = values.get("base_url")
    if base_url is None:
        raise fail(
            "base_url",
            "is not set, and provider azure needs it",
            "Set it to your resource's endpoint, e.g. base_url: https://<resource>.openai.azure.com "
            "(requests go to <base_url>/openai/deployments/<model>/...).",
        )
    if isinstance(base_url, str) and "/openai" in base_url.rstrip("/").split("://", 1)[-1]:
        raise fail(
            "base_url",
            "has a path with /openai in it",
            "With provider azure give only the endpoint, e.g. https://<resource>.openai.azure.com: dbt_llm adds "
            "/openai/deployments/<model>/... itself, and `model` is the deployment name.",
        )
    return values if "api_key_env" in values else {**values, "api_key_env": "AZURE_OPENAI_API_KEY"}
