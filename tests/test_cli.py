"""`dbt-llm costs` / `errors` against a DuckDB file, also while a dbt run holds it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

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
