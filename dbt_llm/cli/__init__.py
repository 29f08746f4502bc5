"""`dbt-llm`: fetch a local model, and look at what the LLM calls of your dbt runs cost and what failed."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ..duckdb.migrations import quote
from ..errors import DbtLlmError
from . import costs, explain, models, report
from .audit import COSTS_SQL, ERRORS_SQL, query, table, where_last_run

__all__ = ["COSTS_SQL", "main"]


def _spark(argv: Sequence[str]) -> int:
    try:
        from ..spark.cli import run
    except ImportError as exc:
        print(
            f"dbt-llm spark needs the spark extra ({exc.name} is missing): pip install 'dbt-llm[spark]'",
            file=sys.stderr,
        )
        return 2
    return run(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["spark"]:  # everything after it is dbt's
        return _spark(args_list[1:])
    parser = argparse.ArgumentParser(prog="dbt-llm", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    costs.add_parser(sub)
    cmd = sub.add_parser("errors", help="rows that got no valid answer, and why")
    cmd.add_argument("--db", required=True, help="path of the DuckDB file of your dbt profile")
    cmd.add_argument("--schema", default="dbt_llm", help="schema of the llm_* tables (default: dbt_llm)")
    cmd.add_argument("--all", action="store_true", help="all runs instead of the last one")
    pull_cmd = sub.add_parser("pull", help="download a local model into the model cache and verify its digest")
    pull_cmd.add_argument("model", nargs="?", default=None, help="a name from `dbt-llm models` (default: the default)")
    pull_cmd.add_argument(
        "--dir", default=None, help="model cache directory (default: $DBT_LLM_MODELS_DIR or ~/.cache)"
    )
    sub.add_parser("models", help="the local models dbt-llm knows, and which are downloaded")
    report.add_parser(sub)
    explain.add_parser(sub)
    sub.add_parser("spark", help="run a dbt command on Spark with dbt-llm's functions: dbt-llm spark run ...")
    args = parser.parse_args(args_list)
    if args.command in ("pull", "models"):
        return models.run(args)
    if args.command == "report":
        return report.run(args)
    if args.command == "explain":
        return explain.run(args)
    if args.command == "costs":
        return costs.run(args)
    schema = quote(args.schema)
    where = where_last_run(schema, args.all)
    try:
        columns, rows = query(args.db, ERRORS_SQL.format(s=schema, where=where, limit=50), args, "llm_errors")
    except DbtLlmError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(table(columns, rows) if rows else "nothing recorded for this selection")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
