"""Rows counted in SQL. Each macro call's statement counts its rows with nextval() on a sequence of
its own (llm_rows_<handle> in the dbt_llm schema, made by _llm_plan on dbt's connection), so a row
the cache answers never enters Python. A sequence's value is neither transactional nor rolled back,
and other connections see it at once: the audit reads it (on a cursor of its own) whenever it writes
a row, and the sequences are dropped when the dbt command ends, or when the next process attaches.
A sequence made inside a transaction dbt opened while compiling (an adapter call such as
get_columns_in_relation begins one) is seen by no other connection until that commits: the model's
post-hook reports its values first, on dbt's connection (dbt_llm_rows_counted)."""

from __future__ import annotations

import threading

import duckdb

PREFIX = "llm_rows_"


class RowCounts:
    def __init__(self) -> None:
        self._lock = threading.Lock()  # a DuckDB cursor is used by one thread at a time
        self._cursor: duckdb.DuckDBPyConnection | None = None
        self._reported: dict[str, int] = {}  # by dbt_llm_rows_counted, by sequence name

    def bind(self, conn: duckdb.DuckDBPyConnection) -> None:
        """The first connection attached: a cursor of its own, never the calling query's."""
        with self._lock:
            self._cursor = conn.cursor()

    @staticmethod
    def sequence(schema: str, handle: str) -> str:
        return f"{schema}.{PREFIX}{handle}"

    # -- dbt_llm_rows_counted(sequence_name, last_value): the post-hook, on dbt's connection --
    def reported(self, name: str, value: int | None) -> int:
        with self._lock:
            self._reported[name] = max(self._reported.get(name, 0), value or 0)
            return self._reported[name]

    def read(self, names: list[str]) -> int:
        """The rows the sequences counted (a sequence no statement used yet, or gone, counts none)."""
        short = [name.rsplit(".", 1)[-1] for name in names]
        with self._lock:
            if self._cursor is None or not short:
                return 0
            try:
                found = self._cursor.execute(
                    "select sequence_name, last_value from duckdb_sequences() where sequence_name in "
                    "(select unnest($names))",
                    {"names": short},
                ).fetchall()
            except duckdb.ConnectionException:
                # dbt closed the database while the progress thread or the audit still read: the
                # sequences are gone with it, what the post-hooks reported is what is left.
                self._cursor, found = None, []
            live = {str(name): int(value or 0) for name, value in found}
            return sum(max(live.get(n, 0), self._reported.get(n, 0)) for n in short)

    def drop_all(self) -> None:
        """Every row sequence: the command ended (or the last process was killed), nothing uses them."""
        with self._lock:
            if self._cursor is None:
                return
            try:
                found = self._cursor.execute(
                    "select database_name, schema_name, sequence_name from duckdb_sequences() "
                    "where starts_with(sequence_name, $prefix)",
                    {"prefix": PREFIX},
                ).fetchall()
                for database, schema, name in found:
                    self._cursor.execute(f'drop sequence if exists "{database}"."{schema}"."{name}"')
            except duckdb.ConnectionException:
                self._cursor = None  # closed: the next process to attach drops them
            self._reported = {}
