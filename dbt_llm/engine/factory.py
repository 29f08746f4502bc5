"""The engine a config asks for: one place for the settings, shared by DuckDB's runtime and Spark's workers."""

from __future__ import annotations

from collections.abc import Callable

from ..config import LlmConfig
from ..pricing import PriceTable
from ..providers import Provider
from .engine import Engine, EngineSettings


def engine_for(config: LlmConfig, prices: PriceTable, provider_factory: Callable[[], Provider]) -> Engine:
    return Engine(provider_factory, prices=prices, settings=engine_settings(config))


def engine_settings(config: LlmConfig) -> EngineSettings:
    return EngineSettings(
        # A CPU model answers as many requests at once as it has slots.
        max_concurrency=config.local_parallel if config.provider == "local" else config.max_concurrency,
        max_attempts=config.max_attempts,
        request_timeout=config.request_timeout,
        row_timeout=config.row_timeout,
        requests_per_minute=config.requests_per_minute,
        tokens_per_minute=config.tokens_per_minute,
        pack_chars=config.max_input_chars,
    )
