"""Settings one dbt model gives itself, over the profile's: `config(meta={'dbt_llm': {...}})`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import SpecError
from .ledger import HOOKED_COMMANDS

KEYS = ("on_error", "model", "max_cost_usd", "mode")


@dataclass(frozen=True)
class ModelSettings:
    on_error: str | None = None  # None: the profile's
    model: str | None = None
    max_cost_usd: float | None = None
    mode: str | None = None  # realtime or batch


def parse_model_settings(raw: Any, where: str) -> ModelSettings:
    """`raw` is the model's meta `dbt_llm` dict (or None). Jinja's `none` and YAML's `null` mean
    on_error: null, as in the profile."""
    if raw is None:
        return ModelSettings()
    fix = "Use config(meta={'dbt_llm': {'on_error': 'null', 'model': '...', 'max_cost_usd': 1.0}})."
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: meta `dbt_llm` must be a dict; got {raw!r}. {fix}")
    unknown = sorted(set(raw) - set(KEYS))
    if unknown:
        raise SpecError(f"{where}: meta `dbt_llm` has unknown key(s) {unknown}; known: {', '.join(KEYS)}. {fix}")
    on_error = raw.get("on_error", "fail") if "on_error" in raw else None
    if "on_error" in raw and on_error is None:
        on_error = "null"
    if on_error not in (None, "fail", "null"):
        raise SpecError(f"{where}: meta dbt_llm.on_error is {on_error!r}; use 'fail' or 'null'.")
    model = raw.get("model")
    if model is not None and (not isinstance(model, str) or not model.strip()):
        raise SpecError(f"{where}: meta dbt_llm.model must be a model name; got {model!r}.")
    cap = raw.get("max_cost_usd")
    if cap is not None and (isinstance(cap, bool) or not isinstance(cap, (int, float)) or cap < 0):
        raise SpecError(f"{where}: meta dbt_llm.max_cost_usd must be a number >= 0 (USD); got {cap!r}.")
    mode = raw.get("mode")
    if mode not in (None, "realtime", "batch"):
        raise SpecError(f"{where}: meta dbt_llm.mode is {mode!r}; use 'realtime' or 'batch'.")
    return ModelSettings(on_error=on_error, model=model, max_cost_usd=None if cap is None else float(cap), mode=mode)


def call_mode(mode: Any, *, command: str, provider: str, where: str) -> str:
    """A call's mode: the dbt var dbt_llm_mode, else the model's meta, else the profile (the caller picks
    the first set). A preview (`dbt show`) is answered realtime: nobody waits hours for a LIMIT."""
    if mode not in ("realtime", "batch"):
        raise SpecError(f"{where}: dbt_llm_mode is {mode!r}; use realtime or batch.")
    if command not in HOOKED_COMMANDS:
        return "realtime"
    if mode == "batch" and provider != "openai":
        raise SpecError(
            f"{where}: batch mode needs an endpoint with the OpenAI Batch API (provider: openai); the embedded "
            "model has none. Run it realtime (dbt_llm_mode: realtime)."
        )
    return str(mode)
