"""`dbt-llm report`: one self-contained HTML page of who spent what, from the audit of a DuckDB file."""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import duckdb

from ..duckdb.migrations import quote
from ..errors import DbtLlmError
from .audit import connect
from .report_data import read_report
from .report_html import page


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser("report", help="an offline HTML page of spend, cache hits, failures and savings over time")
    cmd.add_argument("--db", required=True, help="path of the DuckDB file of your dbt profile")
    cmd.add_argument("--schema", default="dbt_llm", help="schema of the llm_* tables (default: dbt_llm)")
    cmd.add_argument("--days", type=int, default=30, help="how many days back, today included (default: 30)")
    cmd.add_argument("--out", default="report.html", help="the HTML file to write (default: report.html)")


def run(args: argparse.Namespace) -> int:
    if args.days < 1:
        print(f"--days must be 1 or more; got {args.days}.", file=sys.stderr)
        return 2
    args.all = False  # the lock advice of audit.query repeats the command's options
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    try:
        with connect(args.db, args) as con:
            data = read_report(con, quote(args.schema), args.days, now.date())
    except DbtLlmError as exc:
        print(exc, file=sys.stderr)
        return 1
    except duckdb.CatalogException:
        missing = f"{args.db} has no {args.schema}.llm_audit yet: run a dbt model that calls an llm_* macro."
        print(missing, file=sys.stderr)
        return 1
    out = Path(args.out)
    out.write_text(page(data, args.schema, args.days, now), encoding="utf-8")
    t = data.totals
    print(
        f"wrote {out}: {len(data.days)} day(s), ${t.usd:.4f}, {t.rows} rows, {t.calls} API calls, "
        f"{len(data.models)} model(s), {len(data.owners)} owner(s)"
    )
    return 0
