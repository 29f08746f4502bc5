"""The writer against a real DuckDB with the llm_* tables migrated: rows are committed in batches, a
flush waits for what was put before it and reports a write that failed, commit_cache skips the wait
when nothing is behind, audit and error rows keep their latest version, and what was flushed
survives the process dying."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from dbt_llm.calls.rows import AuditRow, CacheRow, ErrorRow, now
from dbt_llm.duckdb.migrations import migrate
from dbt_llm.duckdb.writer import Writer
from dbt_llm.errors import DbtLlmError

SCHEMA = "dbt_llm"


class Cursor:
    """A DuckDB cursor that tells its connection when the writer closed it."""

    def __init__(self, owner: Watched, cursor: duckdb.DuckDBPyConnection) -> None:
        self._owner, self._cursor = owner, cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self._cursor, name)

    def close(self) -> None:
        self._cursor.close()
        self._owner.writes += 1


class Watched:
    """dbt's DuckDB connection as the writer sees it. The writer takes one cursor per write and
    closes it when the write is over (committed or failed): `writes` counts them. While `gate` is
    clear, taking a cursor waits: the writer is held before its next write."""

    def __init__(self, conn: duckdb.DuckDBPyConnection) -> None:
        self.conn = conn
        self.writes = 0
        self.held = False
        self.gate = threading.Event()
        self.gate.set()

    def cursor(self) -> Cursor:
        self.held = True
        self.gate.wait()
        self.held = False
        return Cursor(self, self.conn.cursor())


@pytest.fixture
def conn() -> Iterator[duckdb.DuckDBPyConnection]:
    with duckdb.connect(":memory:") as connection:
        yield connection


@pytest.fixture
def watched(conn: duckdb.DuckDBPyConnection) -> Watched:
    return Watched(conn)


@pytest.fixture
def writer(watched: Watched) -> Writer:
    writer = Writer()
    writer.bind(watched, migrate(watched.conn, SCHEMA))  # type: ignore[arg-type]
    return writer


def cache_row(i: int, result: str = '{"label":"bug"}') -> CacheRow:
    return CacheRow(f"k{i}", "classify", "m", result, 10, 2, 1e-5, now(), "inv", "model.p.m")


def error_row(message: str, attempts: int) -> ErrorRow:
    return ErrorRow("inv", "model.p.m", "k", "classify", "m", "retries_exhausted", message, attempts, "text", now())


def query(conn: duckdb.DuckDBPyConnection, sql: str) -> list[tuple[Any, ...]]:
    cur = conn.cursor()
    try:
        return cur.execute(sql.format(s=SCHEMA)).fetchall()
    finally:
        cur.close()


def until(condition: Callable[[], bool]) -> None:
    """Wait for something the writer's thread does (a hang guard, not a measure of time)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the writer never got there"
        time.sleep(0.001)


def test_rows_put_while_a_write_is_on_go_out_together_in_the_next_one(writer: Writer, watched: Watched) -> None:
    watched.gate.clear()
    writer.put_cache(cache_row(0))
    until(lambda: watched.held)  # the writer took row 0 and waits to write it
    for i in range(1, 100):
        writer.put_cache(cache_row(i))
    writer.put_error(error_row("HTTP 500", 4))
    watched.gate.set()
    writer.flush()
    assert watched.writes == 2  # row 0, then the 99 rows and the error row in one transaction
    assert query(watched.conn, "select count(*) from {s}.llm_cache") == [(100,)]
    assert query(watched.conn, "select count(*) from {s}.llm_errors") == [(1,)]


def test_commit_cache_returns_at_once_when_the_cache_rows_are_committed(writer: Writer, watched: Watched) -> None:
    writer.put_cache(cache_row(0))
    writer.commit_cache()
    assert query(watched.conn, "select key from {s}.llm_cache") == [("k0",)]
    watched.gate.clear()
    writer.put_error(error_row("HTTP 500", 4))
    until(lambda: watched.held)  # the writer is held with the error row: a flush would wait for it
    with pytest.raises(DbtLlmError, match="did not commit within 0s"):
        writer.flush(timeout=0.01)
    caller = threading.Thread(target=writer.commit_cache)  # no cache row is behind: it does not wait
    caller.start()
    caller.join(timeout=30)
    assert not caller.is_alive()
    writer.put_cache(cache_row(1))
    caller = threading.Thread(target=writer.commit_cache)  # row 1 is behind: it waits for the writer
    caller.start()
    watched.gate.set()
    caller.join()
    assert query(watched.conn, "select key from {s}.llm_cache order by key") == [("k0",), ("k1",)]


def test_the_latest_audit_and_error_row_of_a_key_is_kept_and_the_first_answer(writer: Writer, watched: Watched) -> None:
    audit = AuditRow("inv", "model.p.m", "", "classify", "m", "openai", "run")
    audit.rows, audit.status = 10, "running"
    writer.put_audit(audit)
    audit.rows = 20  # put_audit took a snapshot: this is the next version, not a change of the first
    writer.put_audit(audit)
    writer.put_error(error_row("HTTP 500", 2))
    writer.put_cache(cache_row(0, '{"label":"bug"}'))
    writer.flush()
    assert query(watched.conn, "select rows, status from {s}.llm_audit") == [(20, "running")]
    writer.put_audit(dataclasses.replace(audit, rows=30, status="success"))
    writer.put_error(error_row("HTTP 503", 4))
    writer.put_cache(cache_row(0, '{"label":"billing"}'))  # a key's cached answer is never replaced
    writer.flush()
    assert query(watched.conn, "select rows, status from {s}.llm_audit") == [(30, "success")]
    assert query(watched.conn, "select message, attempts from {s}.llm_errors") == [("HTTP 503", 4)]
    assert query(watched.conn, "select result from {s}.llm_cache") == [('{"label":"bug"}',)]


def test_a_failed_write_is_raised_by_flush_and_the_writer_keeps_working(writer: Writer, watched: Watched) -> None:
    query(watched.conn, "drop schema {s} cascade")
    writer.put_cache(cache_row(0))
    with pytest.raises(DbtLlmError, match=r"writing to the llm_\* tables failed: .*llm_cache"):
        writer.flush()
    migrate(watched.conn, SCHEMA)
    writer.put_cache(cache_row(1))
    writer.flush()
    writer.commit_cache()
    assert query(watched.conn, "select key from {s}.llm_cache") == [("k1",)]


def test_a_write_that_failed_between_flushes_is_raised_by_the_next_one(writer: Writer, watched: Watched) -> None:
    query(watched.conn, "drop schema {s} cascade")
    writer.put_cache(cache_row(0))
    until(lambda: watched.writes == 1)  # its write failed, with no flush waiting
    migrate(watched.conn, SCHEMA)
    writer.put_cache(cache_row(1))
    # Row 1 is committed, row 0 is lost: the flush that waits for both says so.
    with pytest.raises(DbtLlmError, match="writing to the llm_"):
        writer.commit_cache()
    assert query(watched.conn, "select key from {s}.llm_cache") == [("k1",)]
    writer.flush()  # reported once: the writer goes on
    writer.put_cache(cache_row(2))
    writer.commit_cache()
    assert query(watched.conn, "select count(*) from {s}.llm_cache") == [(2,)]


def test_rows_flushed_before_the_process_dies_are_in_the_file(tmp_path: Path) -> None:
    path = tmp_path / "warehouse.duckdb"
    script = textwrap.dedent(
        f"""
        import os, duckdb
        from dbt_llm.duckdb.migrations import migrate
        from dbt_llm.calls.rows import CacheRow, now
        from dbt_llm.duckdb.writer import Writer

        conn = duckdb.connect({str(path)!r})
        writer = Writer()
        writer.bind(conn, migrate(conn, {SCHEMA!r}))
        row = lambda i: CacheRow(f"k{{i}}", "classify", "m", "{{}}", 1, 1, 0.0, now(), "inv", "model.p.m")
        for i in range(500):
            writer.put_cache(row(i))
        writer.flush()
        for i in range(500, 1000):
            writer.put_cache(row(i))  # maybe committed, maybe not: the process dies now
        os._exit(1)  # no close, no checkpoint
        """
    )
    died = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False)
    assert died.returncode == 1, died.stderr
    with duckdb.connect(str(path)) as conn:
        keys = {k for (k,) in query(conn, "select key from {s}.llm_cache")}
    assert {f"k{i}" for i in range(500)} <= keys
