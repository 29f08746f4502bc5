"""Rows counted in SQL (duckdb/row_counts.py): read on a cursor of its own, and after dbt closed the
database, what the post-hooks reported."""

from __future__ import annotations

import duckdb

from dbt_llm.duckdb.row_counts import RowCounts


def test_counts_from_the_sequence_then_from_reports_once_the_database_closed() -> None:
    conn = duckdb.connect()
    rows = RowCounts()
    rows.bind(conn)
    conn.execute("create sequence llm_rows_a")
    conn.execute("select nextval('llm_rows_a') from range(5)").fetchall()
    assert rows.read(["main.llm_rows_a"]) == 5
    assert rows.reported("llm_rows_a", 3) == 3
    assert rows.read(["main.llm_rows_a"]) == 5  # the larger of the two
    conn.close()
    # The progress thread may still read after dbt closed its connection: no exception, the report left.
    assert rows.read(["main.llm_rows_a"]) == 3
    rows.drop_all()


def test_dropping_after_the_database_closed_is_quiet() -> None:
    conn = duckdb.connect()
    rows = RowCounts()
    rows.bind(conn)
    conn.close()
    rows.drop_all()
    assert rows.read(["main.llm_rows_b"]) == 0
