"""Settings one dbt model gives itself, over the profile's: `config(meta={'dbt_llm': {...}})`, parsed by
dbt_llm.config's ModelSettings (the profile's own field types), and the mode a call runs in."""

from __future__ import annotations

from typing import Any, get_args

from ..config import SETTINGS_FIX, Mode, ModelSettings
from ..config import parse_model_settings as parse_settings
from ..errors import SpecError


def parse_model_settings(raw: Any, where: str) -> ModelSettings:
    """`raw` is the model's meta `dbt_llm` dict (or None). Jinja's `none` and YAML's `null` mean
    on_error: null, as in the profile."""
    if raw is None:
        return ModelSettings()
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: meta `dbt_llm` must be a dict; got {raw!r}. {SETTINGS_FIX}")
    return parse_settings(raw, where)


BATCH_PROVIDERS = frozenset({"openai", "azure", "anthropic"})  # the providers whose Batch API batch/ drives


def call_mode(mode: Any, *, hooked: bool, provider: str, where: str) -> Mode:
    """A call's mode: the dbt var dbt_llm_mode, else the model's meta, else the profile (the caller picks
    the first set). A preview (`dbt show`, no post-hook) is answered realtime: nobody waits hours for a LIMIT."""
    if mode not in get_args(Mode):
        raise SpecError(f"{where}: dbt_llm_mode is {mode!r}; use realtime or batch.")
    if not hooked:
        return "realtime"
    if mode == "batch" and provider not in BATCH_PROVIDERS:
        raise SpecError(
            f"{where}: batch mode needs a provider with a Batch API (provider: openai, azure, or anthropic's "
            "Message Batches); the embedded model has none. Run it realtime (dbt_llm_mode: realtime)."
        )
    return "batch" if mode == "batch" else "realtime"
