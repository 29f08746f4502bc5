"""The llm_* tables migrate from what the previous release left, keeping every row; migrations
are applied once, by name, each in its own transaction."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pytest

from dbt_llm.calls.rows import AUDIT_COLUMNS, AUDIT_KEY, CACHE_COLUMNS, ERROR_COLUMNS
from dbt_llm.duckdb import migrations
from dbt_llm.duckdb.migrations import MIGRATIONS, migrate

PREVIOUS_RELEASE = Path(__file__).parent / "data" / "previous_release.ddl"


def previous_release() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(PREVIOUS_RELEASE.read_text())
    return con


def columns(con: duckdb.DuckDBPyConnection, table: str) -> list[str]:
    return [r[0] for r in con.execute(f"describe dbt_llm.{table}").fetchall()]


def test_a_database_of_the_previous_release_migrates_and_keeps_its_rows() -> None:
    con = previous_release()
    migrate(con, "dbt_llm")
    assert sorted(columns(con, "llm_audit")) == sorted(AUDIT_COLUMNS)
    assert columns(con, "llm_cache") == CACHE_COLUMNS and columns(con, "llm_errors") == ERROR_COLUMNS
    row = con.execute("select invocation_id, batch_id, command, status, cost_usd from dbt_llm.llm_audit").fetchall()
    assert row == [("inv-1", "", None, "success", 0.0001)]
    assert con.execute("select key, result from dbt_llm.llm_cache").fetchall() == [("k1", '{"label":"bug"}')]
    assert con.execute("select count(*) from dbt_llm.llm_errors").fetchone() == (1,)
    names = [r[0] for r in con.execute("select name from dbt_llm.llm_migrations order by id").fetchall()]
    assert names == [name for name, _ in MIGRATIONS]
    # The batch id is part of the key now: two batches of one model are two rows.
    key_values = "'inv-2', 'model.shop.tickets', '{}', 'classify', 'gpt-4o-mini'"
    insert = f"insert into dbt_llm.llm_audit ({', '.join(AUDIT_KEY)}) values ({key_values})"
    con.execute(insert.format("20240101"))
    con.execute(insert.format("20240102"))
    with pytest.raises(duckdb.ConstraintException):
        con.execute(insert.format("20240102"))


def test_migrations_run_once_by_name() -> None:
    con = duckdb.connect()
    migrate(con, "dbt_llm")
    migrate(con, "dbt_llm")  # nothing left to apply: the rebuild of llm_audit does not run twice
    assert con.execute("select count(*) from dbt_llm.llm_migrations").fetchone() == (len(MIGRATIONS),)


def test_a_failing_migration_leaves_the_previous_state(monkeypatch: pytest.MonkeyPatch) -> None:
    con = previous_release()
    broken = [*MIGRATIONS, ("a broken step", "alter table {s}.llm_audit add column x bigint; select * from nowhere")]
    monkeypatch.setattr(migrations, "MIGRATIONS", broken)
    with pytest.raises(duckdb.CatalogException):
        migrate(con, "dbt_llm")
    assert "x" not in columns(con, "llm_audit")
    applied = {r[0] for r in con.execute("select name from dbt_llm.llm_migrations").fetchall()}
    assert "a broken step" not in applied and len(applied) == len(MIGRATIONS)
