"""`dbt-llm costs`: calls, cache hits, tokens and USD from llm_audit, for the last run, all runs or runs
since a date, by node, model, day or invocation, as a table, JSON or CSV."""

from __future__ import annotations

import argparse
import csv
import io
import json
import re
import sys
from collections.abc import Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from ..duckdb.migrations import quote
from ..errors import DbtLlmError
from .audit import COSTS_SQL, query, table, where_last_run

_SUMS = """sum(rows) as rows, sum(cache_hits) as cache_hits, sum(api_calls) as api_calls, sum(retries) as retries,
       sum(failed_rows) as failed, sum(prompt_tokens) + sum(completion_tokens) as tokens,
       round(sum(cost_usd), 6) as cost_usd"""
# --by: the columns of each view and their order; `node` is COSTS_SQL, what `dbt-llm costs` always showed.
VIEWS = {
    "model": ("model", "model", "model"),
    "day": ("cast(started_at as date) as day", "day", "day"),
    "invocation": ("invocation_id, min(started_at) as started_at", "invocation_id", "started_at"),
}
_SINCE = re.compile(r"(\d+)([dh])")


def add_parser(sub: Any) -> None:
    cmd = sub.add_parser("costs", help="calls, cache hits, tokens and USD per model and function")
    cmd.add_argument("--db", required=True, help="path of the DuckDB file of your dbt profile")
    cmd.add_argument("--schema", default="dbt_llm", help="schema of the llm_* tables (default: dbt_llm)")
    runs = cmd.add_mutually_exclusive_group()
    runs.add_argument("--all", action="store_true", help="all runs instead of the last one")
    runs.add_argument(
        "--since",
        default=None,
        metavar="WHEN",
        help="runs started since WHEN: a date (2026-05-01), a UTC time (2026-05-01T08:00) or an age (7d, 12h)",
    )
    cmd.add_argument(
        "--by",
        choices=("node", "model", "day", "invocation"),
        default="node",
        help="one row per node, function and model (default), per model, per UTC day, or per dbt invocation; "
        "day and invocation read all runs unless --since",
    )
    cmd.add_argument("--format", choices=("table", "json", "csv"), default="table", help="table (default), json, csv")


def since_of(value: str, now: datetime | None = None) -> datetime:
    """--since as a naive UTC timestamp (llm_audit's started_at is one); a bad value raises DbtLlmError."""
    age = _SINCE.fullmatch(value.strip())
    if age:
        now = now or datetime.now(timezone.utc).replace(tzinfo=None)
        unit = "days" if age.group(2) == "d" else "hours"
        return now - timedelta(**{unit: int(age.group(1))})
    try:
        when = datetime.fromisoformat(value.strip())
    except ValueError:
        raise DbtLlmError(
            f"--since {value!r}: give a date (2026-05-01), a UTC time (2026-05-01T08:00) or an age (7d, 12h)."
        ) from None
    return when.astimezone(timezone.utc).replace(tzinfo=None) if when.tzinfo else when


def costs_sql(args: argparse.Namespace) -> str:
    schema = quote(args.schema)
    if args.since is not None:
        since = since_of(args.since)
        where = f"where started_at >= timestamp '{since.isoformat(sep=' ')}'"
    else:
        where = where_last_run(schema, args.all or args.by in ("day", "invocation"))
    if args.by == "node":
        return COSTS_SQL.format(s=schema, where=where)
    keys, group, order = VIEWS[args.by]
    return f"select {keys}, {_SUMS}\nfrom {schema}.llm_audit {where}\ngroup by {group} order by {order}"


def usd(value: Any) -> Any:
    """Fixed decimals: 0.000017, never 1.7e-05."""
    return f"{value:.6f}" if isinstance(value, float) else value


def shown(columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps([dict(zip(columns, row, strict=True)) for row in rows], indent=2, default=str)
    fixed = [[usd(v) if c == "cost_usd" else v for c, v in zip(columns, row, strict=True)] for row in rows]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(fixed)
        return out.getvalue().rstrip("\n")
    return table(columns, fixed) if rows else "nothing recorded for this selection"


def run(args: argparse.Namespace) -> int:
    try:
        columns, rows = query(args.db, costs_sql(args), args, "llm_audit")
    except DbtLlmError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(shown(columns, rows, args.format))
    return 0
