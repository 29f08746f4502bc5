"""Errors raised by dbt-llm: one base class, each message names what is at fault and the fix."""

from __future__ import annotations


class DbtLlmError(Exception):
    """Base class of every error dbt-llm raises on purpose."""


class ConfigError(DbtLlmError):
    """The plugin config in profiles.yml is invalid (raised when dbt opens the connection)."""


class SpecError(DbtLlmError):
    """A macro was called with invalid arguments (labels, fields, schema, ...)."""


class ProviderError(DbtLlmError):
    """The model provider refused the run as a whole (bad key, unknown model, ...)."""


class RowFailuresError(DbtLlmError):
    """Some rows of a model got no valid answer (raised after all rows were tried)."""


class BudgetExceededError(DbtLlmError):
    """The invocation reached `max_cost_usd`; paid answers are kept in the cache."""


class RunCancelledError(DbtLlmError):
    """Ctrl-C or SIGTERM stopped the run: rows not answered yet were not sent; the next run sends them."""


class InternalStateError(DbtLlmError):
    """dbt-llm was used outside of what it supports (for example SQL run outside dbt)."""


class BatchPendingError(DbtLlmError):
    """A model's batch jobs had not ended at batch_timeout: nothing was written; the next run collects them."""


class DryRunStop(DbtLlmError):
    """A dry run on Spark stopped an incremental model's statement: it would have appended NULLs."""
