"""`dbt-llm costs` / `errors` against a DuckDB file, also while a dbt run holds it; costs' views and formats."""

from __future__ import annotations

import csv
import io
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from dbt_llm.cli import main

# A stand-in for a running dbt: it writes two audit rows, the second after a checkpoint (so it is
# only in the .wal file), and keeps the file open for writing until its stdin closes.
HOLDER = """
import sys, duckdb
con = duckdb.connect(sys.argv[1])
con.execute("create schema dbt_llm")
con.execute('''create table dbt_llm.llm_audit (invocation_id varchar, node_id varchar, function varchar,
    model varchar, started_at timestamp, rows bigint, cache_hits bigint, api_calls bigint, retries bigint,
    failed_rows bigint, prompt_tokens bigint, completion_tokens bigint, cost_usd double)''')
row = "insert into dbt_llm.llm_audit values ('inv', ?, 'classify', 'm', now(), 10, 0, 10, 0, 0, 100, 10, 0.5)"
con.execute(row, ["model.p.checkpointed"])
con.execute("checkpoint")
con.execute(row, ["model.p.in_the_wal"])
print("ready", flush=True)
sys.stdin.read()
"""


@pytest.fixture
def held_db(tmp_path: Path) -> Iterator[tuple[Path, int]]:
    db = tmp_path / "warehouse.duckdb"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(db)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "ready\n"
        yield db, holder.pid
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait()


def test_a_file_held_by_a_run_says_so_and_how_to_read_the_audit(
    held_db: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    db, pid = held_db
    assert main(["costs", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert f"cannot read {db}: process {pid} has it open for writing, most likely a dbt run" in err
    assert "`progress_interval` seconds" in err and "After the run, this command works as it is" in err
    assert f"cp {db} /tmp/snap.duckdb && cp {db}.wal /tmp/snap.duckdb.wal" in err
    assert "dbt-llm costs --db /tmp/snap.duckdb" in err
    assert "Conflicting lock" not in err and "Traceback" not in err


def test_the_advice_holds_a_copy_taken_during_the_run_reads_with_its_wal(
    held_db: tuple[Path, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = held_db
    snapshot = tmp_path / "snap.duckdb"
    shutil.copy(db, snapshot)
    assert main(["costs", "--db", str(snapshot), "--all"]) == 0
    out = capsys.readouterr().out
    assert "model.p.checkpointed" in out and "model.p.in_the_wal" not in out  # without the .wal: misses writes

    snapshot.unlink()
    shutil.copy(db, snapshot)
    shutil.copy(f"{db}.wal", f"{snapshot}.wal")
    assert main(["costs", "--db", str(snapshot), "--all"]) == 0
    out = capsys.readouterr().out
    assert "model.p.checkpointed" in out and "model.p.in_the_wal" in out


def test_a_missing_file_names_the_profile_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["errors", "--db", str(tmp_path / "nope.duckdb")]) == 1
    assert "Pass the `path` of your dbt-duckdb profile" in capsys.readouterr().err


def audit_db(path: Path, schema: str = "dbt_llm") -> Path:
    """Three invocations: 10 days ago (two rows), 3 days ago, a minute ago."""
    with duckdb.connect(str(path)) as con:
        con.execute(f"create schema {schema}")
        con.execute(
            f"""create table {schema}.llm_audit (invocation_id varchar, node_id varchar, function varchar,
            model varchar, started_at timestamp, rows bigint, cache_hits bigint, api_calls bigint, retries bigint,
            failed_rows bigint, prompt_tokens bigint, completion_tokens bigint, cost_usd double)"""
        )
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        for inv, age, node, model, cost in (
            ("old", timedelta(days=10), "model.p.a", "gpt-4o", 0.25),
            ("old", timedelta(days=10, seconds=-5), "model.p.b", "gpt-4o-mini", 0.5),
            ("mid", timedelta(days=3), "model.p.a", "gpt-4o", 1.0),
            ("new", timedelta(minutes=1), "model.p.a", "gpt-4o-mini", 0.000017),
        ):
            con.execute(
                f"insert into {schema}.llm_audit values (?, ?, 'classify', ?, ?, 10, 2, 8, 1, 0, 100, 10, ?)",
                [inv, node, model, now - age, cost],
            )
    return path


def costs(capsys: pytest.CaptureFixture[str], db: Path, *args: str) -> str:
    assert main(["costs", "--db", str(db), *args]) == 0
    return capsys.readouterr().out


def test_costs_print_usd_with_fixed_decimals(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = costs(capsys, audit_db(tmp_path / "w.duckdb"))  # the last run: one row
    assert "0.000017" in out and "e-05" not in out and "model.p.a" in out
    assert "1.250000" in costs(capsys, tmp_path / "w.duckdb", "--all")


def test_costs_by_day_invocation_and_model_and_since(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = audit_db(tmp_path / "w.duckdb")
    by_invocation = json.loads(costs(capsys, db, "--by", "invocation", "--format", "json"))
    assert [(r["invocation_id"], r["api_calls"], r["cost_usd"]) for r in by_invocation] == [
        ("old", 16, 0.75),
        ("mid", 8, 1.0),
        ("new", 8, 0.000017),
    ]
    by_day = json.loads(costs(capsys, db, "--by", "day", "--format", "json"))
    assert len(by_day) == 3 and [r["cost_usd"] for r in by_day] == [0.75, 1.0, 0.000017]
    week = json.loads(costs(capsys, db, "--by", "invocation", "--since", "7d", "--format", "json"))
    assert [r["invocation_id"] for r in week] == ["mid", "new"]
    assert [
        r["invocation_id"]
        for r in json.loads(costs(capsys, db, "--since", "1h", "--by", "invocation", "--format", "json"))
    ] == ["new"]
    since_date = (datetime.now(timezone.utc) - timedelta(days=5)).date().isoformat()
    by_model = list(
        csv.reader(io.StringIO(costs(capsys, db, "--by", "model", "--since", since_date, "--format", "csv")))
    )
    assert by_model == [
        ["model", "rows", "cache_hits", "api_calls", "retries", "failed", "tokens", "cost_usd"],
        ["gpt-4o", "10", "2", "8", "1", "0", "110", "1.000000"],
        ["gpt-4o-mini", "10", "2", "8", "1", "0", "110", "0.000017"],
    ]


def test_a_bad_since_says_what_it_takes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["costs", "--db", str(audit_db(tmp_path / "w.duckdb")), "--since", "last week"]) == 1
    assert "give a date (2026-05-01), a UTC time (2026-05-01T08:00) or an age (7d, 12h)" in capsys.readouterr().err


def test_a_wrong_schema_names_the_schemas_that_have_the_audit(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = audit_db(tmp_path / "w.duckdb", schema="llm_prod")
    assert main(["costs", "--db", str(db)]) == 1
    err = capsys.readouterr().err
    assert f"{db} has no table dbt_llm.llm_audit; the schemas of the file that have one: llm_prod." in err
    assert "Pass --schema llm_prod" in err and "no dbt_llm tables yet" not in err
    assert "1.250000" in costs(capsys, db, "--schema", "llm_prod", "--all")

    empty = tmp_path / "empty.duckdb"
    duckdb.connect(str(empty)).close()
    assert main(["costs", "--db", str(empty)]) == 1
    assert "has no dbt_llm tables yet" in capsys.readouterr().err


def test_the_advice_for_a_held_file_keeps_the_costs_options(
    held_db: tuple[Path, int], capsys: pytest.CaptureFixture[str]
) -> None:
    db, _ = held_db
    assert main(["costs", "--db", str(db), "--since", "7d", "--by", "day", "--format", "csv"]) == 1
    assert "dbt-llm costs --db /tmp/snap.duckdb --since 7d --by day --format csv" in capsys.readouterr().err
