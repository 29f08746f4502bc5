"""dbt-llm: LLM classify and extract inside dbt-duckdb models, with a warehouse cache and a cost audit."""

from .config import LlmConfig, parse_config
from .engine import Budget, Engine, Outcome, Request
from .errors import (
    BudgetExceededError,
    ConfigError,
    DbtLlmError,
    InternalStateError,
    ProviderError,
    RowFailuresError,
    SpecError,
)
from .functions.tasks import Task, build_task, cache_key, canonical_json
from .pricing import Price, PriceTable

__version__ = "0.1.0"

__all__ = [
    "Budget",
    "BudgetExceededError",
    "ConfigError",
    "DbtLlmError",
    "Engine",
    "InternalStateError",
    "LlmConfig",
    "Outcome",
    "Price",
    "PriceTable",
    "ProviderError",
    "Request",
    "RowFailuresError",
    "SpecError",
    "Task",
    "build_task",
    "cache_key",
    "canonical_json",
    "parse_config",
]
