"""The dbt-duckdb plugin (`- module: dbt_llm.plugin` in profiles.yml): registers the UDFs on each connection."""

from __future__ import annotations

import atexit
import weakref
from collections.abc import Callable
from typing import Any

import duckdb
from dbt.adapters.duckdb.plugins import BasePlugin
from dbt.adapters.events.logging import AdapterLogger
from duckdb.sqltypes import BIGINT, BOOLEAN, DOUBLE, VARCHAR

from ..config import parse_config
from ..errors import ConfigError
from . import dbt_events, signals
from .agg import Aggregates
from .runtime import Runtime

LIST_OF_VARCHAR = duckdb.list_type(VARCHAR)


class ConnectionConfigError(ConfigError, RuntimeError):
    """A ConfigError as dbt-duckdb expects a failed connection to fail.

    dbt-duckdb turns a RuntimeError from a plugin into dbt's FailedToConnectError, which dbt
    prints as its message alone and does not retry; any other exception makes dbt open the
    connection again while it cleans up, and print every attempt's traceback.
    """


class Plugin(BasePlugin):
    def initialize(self, plugin_config: dict[str, Any]) -> None:
        settings = getattr(self.creds, "settings", None) or {}
        try:
            config = parse_config(plugin_config, settings)
        except ConfigError as exc:
            raise ConnectionConfigError(str(exc)) from None
        self.runtime = Runtime(config, log=AdapterLogger("dbt_llm").info)
        runtime = self.runtime
        self.aggs = Aggregates(runtime.sender, runtime.writer, runtime._live, config.max_input_chars)  # llm_agg
        # Before the interpreter collects dbt-duckdb's connection: no write or request may still run then.
        atexit.register(_close_at_exit, weakref.ref(self.runtime))
        signals.on_signal(self.runtime.cancel)
        signals.install()
        dbt_events.watch(self.runtime.on_dbt_event)  # its events on the main thread install the handlers

    def configure_connection(self, conn: duckdb.DuckDBPyConnection) -> None:
        runtime = self.runtime
        runtime.attach(conn)
        self.aggs.bind(conn, runtime.schema())

        conn.create_function("dbt_llm_prepare", runtime.prepare, [VARCHAR], VARCHAR, side_effects=True)
        # A preview's rows (hooked commands count theirs in SQL: row_counts.py).
        _arrow_function(conn, "dbt_llm_tally", runtime.tally, [BOOLEAN, VARCHAR], BOOLEAN, side_effects=True)
        _arrow_function(conn, "dbt_llm_resolve", runtime.resolve, [VARCHAR] * 2, VARCHAR, side_effects=True)
        # llm_agg: the texts of each group as a list (DuckDB has no Python aggregates).
        _arrow_function(conn, "dbt_llm_agg", self.aggs.agg, [LIST_OF_VARCHAR, VARCHAR], VARCHAR, side_effects=True)
        # Not marked side_effects: DuckDB then evaluates it once per distinct text inside the cache
        # subquery (it returns NULL and only starts requests, so that is all it needs).
        _arrow_function(conn, "dbt_llm_submit", runtime.submit, [VARCHAR] * 4, VARCHAR, side_effects=False)
        # A cascade's (escalate_to=): as dbt_llm_submit, told if the first model's cached answer is below the threshold.
        _arrow_function(
            conn,
            "dbt_llm_cascade_submit",
            runtime.cascades.submit,
            [VARCHAR, VARCHAR, VARCHAR, BOOLEAN, VARCHAR],
            VARCHAR,
            side_effects=False,
        )
        # escalate_below='auto': the golden calls of a cascade, then the threshold chosen from their answers.
        conn.create_function(
            "dbt_llm_cascade_auto_calls", runtime.cascades.auto.calls, [VARCHAR], VARCHAR, side_effects=True
        )
        conn.create_function(
            "dbt_llm_cascade_choose",
            runtime.cascades.auto.choose,
            [VARCHAR, DOUBLE, VARCHAR],
            DOUBLE,
            side_effects=True,
        )
        # Not marked side_effects either: it returns the cached answer it is given, once per distinct text.
        _arrow_function(conn, "dbt_llm_sample", runtime.sample, [VARCHAR] * 4, VARCHAR, side_effects=False)
        conn.create_function("dbt_llm_current_spec", runtime.columns.current_spec, [VARCHAR], VARCHAR)
        conn.create_function("dbt_llm_explain", runtime.columns.explain, [VARCHAR], VARCHAR)
        conn.create_function("dbt_llm_refresh_columns", runtime.columns.refresh_columns, [VARCHAR], VARCHAR)
        conn.create_function(
            "dbt_llm_golden_calls", runtime.golden.calls, [VARCHAR, VARCHAR], VARCHAR, side_effects=True
        )
        _arrow_function(conn, "dbt_llm_golden_score", runtime.golden.score, [VARCHAR] * 4, DOUBLE, side_effects=True)
        conn.create_function("dbt_llm_settled", runtime.settled, [VARCHAR, VARCHAR], BOOLEAN, side_effects=True)
        conn.create_function("dbt_llm_schema", runtime.schema, [], VARCHAR)
        conn.create_function("dbt_llm_estimated", runtime.book.estimated, [VARCHAR, VARCHAR], BIGINT, side_effects=True)
        conn.create_function(
            "dbt_llm_built_by_dry_run", runtime.built_by_dry_run, [VARCHAR, VARCHAR], BOOLEAN, side_effects=True
        )
        conn.create_function(
            "dbt_llm_rows_counted", runtime.rows.reported, [VARCHAR, BIGINT], BIGINT, side_effects=True
        )
        conn.create_function("dbt_llm_finish", runtime.finish, [VARCHAR] * 3, VARCHAR, side_effects=True)


def _close_at_exit(runtime: weakref.ref[Runtime]) -> None:
    live = runtime()
    if live is not None:
        live.close()


def _arrow_function(
    conn: duckdb.DuckDBPyConnection,
    name: str,
    function: Callable[..., Any],
    parameters: list[Any],
    return_type: Any,
    *,
    side_effects: bool,
) -> None:
    """A vectorised UDF that sees NULLs itself (`special`): it gets whole Arrow chunks."""
    # Strings, not enums: the enums moved between DuckDB 1.x and 2.x.
    conn.create_function(  # type: ignore[call-overload]
        name,
        function,
        parameters,
        return_type,
        type="arrow",
        null_handling="special",
        side_effects=side_effects,
    )
