"""Reading the llm_* tables of a DuckDB file for the commands: the queries, a plain-text table, and
what to do when a running dbt holds the file."""

from __future__ import annotations

import argparse
import re
import shlex
from collections.abc import Sequence
from typing import Any

import duckdb

from ..errors import DbtLlmError

COSTS_SQL = """
select node_id, function, model, sum(rows) as rows, sum(cache_hits) as cache_hits, sum(api_calls) as api_calls,
       sum(retries) as retries, sum(failed_rows) as failed, sum(prompt_tokens) + sum(completion_tokens) as tokens,
       round(sum(cost_usd), 6) as cost_usd
from {s}.llm_audit {where}
group by all order by node_id, function, model
"""
ERRORS_SQL = """
select node_id, error_kind, attempts, left(replace(input_preview, chr(10), ' '), 40) as input, message
from {s}.llm_errors {where} order by created_at desc limit {limit}
"""


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def connect(db: str, args: argparse.Namespace) -> duckdb.DuckDBPyConnection:
    """Read only; in a process that already has the file open (dbt called in-process), through that."""
    try:
        try:
            return duckdb.connect(db, read_only=True)
        except duckdb.ConnectionException:
            return duckdb.connect(db)
    except duckdb.IOException as exc:
        locked = _LOCK_HOLDER.search(str(exc))
        if locked:
            raise DbtLlmError(_locked(db, locked.group(1), args)) from None
        raise DbtLlmError(f"cannot open {db}: {exc}. Pass the `path` of your dbt-duckdb profile.") from None


def query(
    db: str, sql: str, args: argparse.Namespace, table_name: str = "llm_audit"
) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        with connect(db, args) as con:
            cur = con.execute(sql)
            return [d[0] for d in cur.description or []], cur.fetchall()
    except duckdb.CatalogException:
        raise DbtLlmError(_no_table(db, args, table_name)) from None


def _no_table(db: str, args: argparse.Namespace, table_name: str) -> str:
    """A wrong --schema names the schemas of the file that have the table."""
    schema = args.schema
    with connect(db, args) as con:
        found = con.execute(
            "select distinct table_schema from information_schema.tables where table_name = ? order by 1",
            [table_name],
        ).fetchall()
    if not found:
        return f"{db} has no dbt_llm tables yet: run a dbt model that uses llm_classify or llm_extract."
    names = [str(row[0]) for row in found]
    return (
        f"{db} has no table {schema}.{table_name}; the schemas of the file that have one: {', '.join(names)}. "
        f"Pass --schema {shlex.quote(names[0])} (the `schema` key of the plugin config)."
    )


# DuckDB's words when another process has the file open for writing (it allows no reader then).
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in .*\(PID (\d+)\)")
SNAPSHOT = "/tmp/snap.duckdb"


def _locked(db: str, pid: str, args: argparse.Namespace) -> str:
    """What to do when a running dbt holds the DuckDB file: follow its log, wait, or read a copy."""
    again = ["dbt-llm", args.command, "--db", SNAPSHOT]
    again += ["--schema", args.schema] if args.schema != "dbt_llm" else []
    again += ["--all"] if args.all else []
    for flag, default in (("since", None), ("by", "node"), ("format", "table")):  # costs' own options
        value = getattr(args, flag, default)
        again += [f"--{flag}", str(value)] if value != default else []
    return (
        f"cannot read {db}: process {pid} has it open for writing, most likely a dbt run that is still going, "
        "and DuckDB lets no other process open the file meanwhile, not even to read.\n"
        "- During the run, dbt logs a line per model and function every `progress_interval` seconds (5 by "
        "default) with the calls, tokens and cost so far, also in logs/dbt.log.\n"
        "- After the run, this command works as it is.\n"
        "- Now, read a copy: the copy has what the run had written when you copied it (models still going "
        "have status `running`). Copy the .wal file too, or the copy misses the latest writes. If DuckDB "
        "refuses the copy (most likely the run wrote a checkpoint while you copied), copy again.\n"
        f"    rm -f {SNAPSHOT} {SNAPSHOT}.wal\n"
        f"    cp {shlex.quote(db)} {SNAPSHOT} && cp {shlex.quote(db + '.wal')} {SNAPSHOT}.wal 2>/dev/null\n"
        f"    {shlex.join(again)}"
    )


def where_last_run(schema: str, all_runs: bool) -> str:
    if all_runs:
        return ""
    last = f"(select invocation_id from {schema}.llm_audit order by started_at desc limit 1)"
    return f"where invocation_id = {last}"
