"""The single writer of the llm_* tables.

Every write goes through one thread with its own cursor: a UDF never uses the cursor
of the query that calls it, and concurrent dbt threads never race on a key.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import duckdb
import pyarrow as pa

from ..calls.rows import (
    AUDIT_COLUMNS,
    AUDIT_KEY,
    CACHE_COLUMNS,
    CALL_COLUMNS,
    ERROR_COLUMNS,
    GOLDEN_COLUMNS,
    AuditRow,
    CacheRow,
    CallRow,
    ErrorRow,
    GoldenResultRow,
    row_dict,
)
from ..errors import DbtLlmError

_BATCH_SECONDS = 0.1  # a kill -9 loses at most this much of the answers that arrived
_AT_ONCE = ("flush", "stop")  # items written without waiting for the batch to fill


@dataclass
class _Flush:
    done: threading.Event
    error: BaseException | None = None  # a write that failed since the last flush was told


class Writer:
    """One thread: drains queued rows and commits them in small transactions, each through a
    fresh cursor of dbt's connection. Holding no cursor between batches lets dbt close its
    connection, and release the database file, when the run ends."""

    def __init__(self) -> None:
        self._queue: queue.Queue[tuple[str, Any]] = queue.Queue()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._schema: str | None = None
        self._thread: threading.Thread | None = None
        # A failed write, until a flush reports it: a write that succeeds after it does not undo the loss.
        self._unreported: BaseException | None = None
        self._lock = threading.Lock()
        self._cache_queued = 0  # cache rows put / written (committed, or lost to a write that failed),
        self._cache_written = 0  # so a caller can skip a needless flush
        self._counts = threading.Lock()  # not self._lock: that one is held for a whole write

    def bind(self, conn: duckdb.DuckDBPyConnection, qualified_schema: str) -> None:
        """dbt-duckdb reopens its connection between models; write through the newest one."""
        with self._lock:
            self._conn = conn
            self._schema = qualified_schema
            if self._thread is None:
                # pyarrow imports pandas (a third of a second of CPU) the first time it converts
                # Python values: here, at the first attach, not inside the first model's statement.
                pa.array([], pa.string())
                self._thread = threading.Thread(target=self._loop, name="dbt-llm-writer", daemon=True)
                self._thread.start()

    def put_cache(self, row: CacheRow) -> None:
        with self._counts:
            self._cache_queued += 1
        self._queue.put(("cache", row_dict(row, CACHE_COLUMNS)))

    def commit_cache(self) -> None:
        """Block until every cache row put so far is committed: returns at once when the batches
        already caught up, else flushes."""
        with self._counts:
            behind = self._cache_written < self._cache_queued
        if behind or self._unreported is not None:
            self.flush()

    def put_error(self, row: ErrorRow) -> None:
        self._queue.put(("error", row_dict(row, ERROR_COLUMNS)))

    def put_call(self, row: CallRow) -> None:
        self._queue.put(("call", row_dict(row, CALL_COLUMNS)))

    def put_golden(self, row: GoldenResultRow) -> None:
        self._queue.put(("golden", row_dict(row, GOLDEN_COLUMNS)))

    def put_audit(self, row: AuditRow) -> None:
        """Queue a snapshot of the row (the caller may change it afterwards)."""
        self._queue.put(("audit", row_dict(row, AUDIT_COLUMNS)))

    def flush(self, timeout: float = 120.0) -> None:
        """Block until everything queued before this call is committed; raise if a write failed since
        the last flush (its rows are lost)."""
        marker = _Flush(threading.Event())
        self._queue.put(("flush", marker))
        if not marker.done.wait(timeout):
            raise DbtLlmError(f"dbt_llm: the cache writer did not commit within {timeout:.0f}s.")
        if marker.error is not None:
            raise DbtLlmError(f"dbt_llm: writing to the llm_* tables failed: {marker.error}") from marker.error

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued and end the thread: at exit no write may still run on dbt's connection
        when DuckDB closes it (a busy connection aborts the process)."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(("stop", None))
            thread.join(timeout)

    def _loop(self) -> None:
        last = 0.0
        while True:
            items = [self._queue.get()]
            flushing = items[0][0] in _AT_ONCE
            # One commit per _BATCH_SECONDS at most while answers stream in (a commit costs far more
            # than a row), but at once when a flush waits or the writer was idle.
            while not flushing:
                remaining = last + _BATCH_SECONDS - time.monotonic()
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait()
                except queue.Empty:
                    if remaining <= 0:
                        break
                    continue
                items.append(item)
                flushing = item[0] in _AT_ONCE
            try:
                self._write(items)
            except Exception as exc:  # raised to the flushes of this batch, or else of the next one
                self._unreported = exc
            with self._counts:
                self._cache_written += sum(kind == "cache" for kind, _ in items)
            last = time.monotonic()
            flushes = [item for kind, item in items if kind == "flush"]
            if flushes:
                error, self._unreported = self._unreported, None
                for flush in flushes:
                    flush.error = error
                    flush.done.set()
            if any(kind == "stop" for kind, _ in items):
                return

    def _write(self, items: list[tuple[str, Any]]) -> None:
        cache = [row for kind, row in items if kind == "cache"]
        errors = [row for kind, row in items if kind == "error"]
        audit = {tuple(row[k] for k in AUDIT_KEY): row for kind, row in items if kind == "audit"}
        # Rows appended as they are: (table, columns, rows, conflict clause).
        appended = [
            # Once per run: a call rendered again (dbt compiles, then runs) is the same call.
            ("llm_calls", CALL_COLUMNS, [row for kind, row in items if kind == "call"], "on conflict do nothing"),
            ("llm_golden_results", GOLDEN_COLUMNS, [row for kind, row in items if kind == "golden"], ""),
        ]
        if not (cache or errors or audit or any(rows for _, _, rows, _ in appended)):
            return
        with self._lock:
            conn, schema = self._conn, self._schema
            assert conn is not None and schema is not None
            cur = cursor_of(conn)
            try:
                self._write_with(cur, schema, cache, errors, audit, appended)
            finally:
                cur.close()

    def _write_with(
        self,
        cur: duckdb.DuckDBPyConnection,
        schema: str,
        cache: list[dict[str, Any]],
        errors: list[dict[str, Any]],
        audit: dict[tuple[Any, ...], dict[str, Any]],
        appended: list[tuple[str, list[str], list[dict[str, Any]], str]],
    ) -> None:
        try:
            cur.execute("begin")
            for table, columns, rows, conflict in appended:
                self._insert(cur, f"{schema}.{table}", columns, rows, conflict)
            self._insert(cur, f"{schema}.llm_cache", CACHE_COLUMNS, cache, "on conflict do nothing")
            self._insert(
                cur,
                f"{schema}.llm_errors",
                ERROR_COLUMNS,
                errors,
                "on conflict do update set error_kind = excluded.error_kind, message = excluded.message, "
                "attempts = excluded.attempts, created_at = excluded.created_at",
            )
            updates = ", ".join(f"{c} = excluded.{c}" for c in AUDIT_COLUMNS if c not in AUDIT_KEY)
            self._insert(
                cur, f"{schema}.llm_audit", AUDIT_COLUMNS, audit.values(), f"on conflict do update set {updates}"
            )
            cur.execute("commit")
        except Exception:
            try:
                cur.execute("rollback")
            except duckdb.Error:
                pass
            raise

    @staticmethod
    def _insert(
        cur: duckdb.DuckDBPyConnection, table: str, columns: list[str], rows: Iterable[dict[str, Any]], conflict: str
    ) -> None:
        rows = list(rows)
        if not rows:
            return
        batch = pa.Table.from_pylist([{c: r.get(c) for c in columns} for r in rows])
        cur.register("_dbt_llm_batch", batch)
        cols = ", ".join(columns)
        cur.execute(f"insert into {table} ({cols}) select {cols} from _dbt_llm_batch {conflict}")
        # Not in a `finally`: in a failed transaction it fails too, and would hide why the insert failed.
        # A failed write's cursor is closed, and its registration with it.
        cur.unregister("_dbt_llm_batch")


def cursor_of(conn: duckdb.DuckDBPyConnection) -> duckdb.DuckDBPyConnection:
    # DuckDB 2 refuses (rather than waits for) a call on a connection another thread is
    # using; dbt threads call cursor() on the same connection only briefly, so retry.
    for _ in range(2000):
        try:
            return conn.cursor()
        except duckdb.Error as exc:
            if "busy" not in str(exc):
                raise
            time.sleep(0.002)
    return conn.cursor()
