"""`dbt-llm`: fetch a local model, and look at what the LLM calls of your dbt runs cost and what failed."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from collections.abc import Sequence
from typing import Any

import duckdb

from .duckdb.migrations import quote
from .errors import DbtLlmError

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


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    cells = [[("" if v is None else str(v)) for v in row] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _query(db: str, sql: str, args: argparse.Namespace) -> tuple[list[str], list[tuple[Any, ...]]]:
    try:
        with duckdb.connect(db, read_only=True) as con:
            cur = con.execute(sql)
            return [d[0] for d in cur.description or []], cur.fetchall()
    except duckdb.IOException as exc:
        locked = _LOCK_HOLDER.search(str(exc))
        if locked:
            raise DbtLlmError(_locked(db, locked.group(1), args)) from None
        raise DbtLlmError(f"cannot open {db}: {exc}. Pass the `path` of your dbt-duckdb profile.") from None
    except duckdb.CatalogException:
        raise DbtLlmError(
            f"{db} has no dbt_llm tables yet: run a dbt model that uses llm_classify or llm_extract."
        ) from None


# DuckDB's words when another process has the file open for writing (it allows no reader then).
_LOCK_HOLDER = re.compile(r"Conflicting lock is held in .*\(PID (\d+)\)")
SNAPSHOT = "/tmp/snap.duckdb"


def _locked(db: str, pid: str, args: argparse.Namespace) -> str:
    """What to do when a running dbt holds the DuckDB file: follow its log, wait, or read a copy."""
    again = ["dbt-llm", args.command, "--db", SNAPSHOT]
    again += ["--schema", args.schema] if args.schema != "dbt_llm" else []
    again += ["--all"] if args.all else []
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


def _where(schema: str, all_runs: bool) -> str:
    if all_runs:
        return ""
    last = f"(select invocation_id from {schema}.llm_audit order by started_at desc limit 1)"
    return f"where invocation_id = {last}"


def _models(args: argparse.Namespace) -> int:
    from .local.pull import pull, verify
    from .local.registry import DEFAULT_MODEL, MODELS

    try:
        if args.command == "pull":
            path = pull(args.model or DEFAULT_MODEL, args.dir)
            print(f"ready: {path}")
            return 0
        rows = [
            (
                m.name + (" (default)" if m.name == DEFAULT_MODEL else ""),
                f"{m.size_mb:.0f} MB",
                m.license,
                "yes" if verify(m) else "no",
                m.description,
            )
            for m in MODELS.values()
        ]
        print(_table(["model", "size", "licence", "downloaded", "what it is"], rows))
        return 0
    except DbtLlmError as exc:
        print(exc, file=sys.stderr)
        return 1


def _spark(argv: Sequence[str]) -> int:
    try:
        from .spark.cli import run
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
    for name, text in (
        ("costs", "calls, cache hits, tokens and USD per model and function"),
        ("errors", "rows that got no valid answer, and why"),
    ):
        cmd = sub.add_parser(name, help=text)
        cmd.add_argument("--db", required=True, help="path of the DuckDB file of your dbt profile")
        cmd.add_argument("--schema", default="dbt_llm", help="schema of the llm_* tables (default: dbt_llm)")
        cmd.add_argument("--all", action="store_true", help="all runs instead of the last one")
    pull_cmd = sub.add_parser("pull", help="download a local model into the model cache and verify its digest")
    pull_cmd.add_argument("model", nargs="?", default=None, help="a name from `dbt-llm models` (default: the default)")
    pull_cmd.add_argument(
        "--dir", default=None, help="model cache directory (default: $DBT_LLM_MODELS_DIR or ~/.cache)"
    )
    sub.add_parser("models", help="the local models dbt-llm knows, and which are downloaded")
    sub.add_parser("spark", help="run a dbt command on Spark with dbt-llm's functions: dbt-llm spark run ...")
    args = parser.parse_args(args_list)
    if args.command in ("pull", "models"):
        return _models(args)
    schema = quote(args.schema)
    where = _where(schema, args.all)
    try:
        if args.command == "costs":
            columns, rows = _query(args.db, COSTS_SQL.format(s=schema, where=where), args)
        else:
            columns, rows = _query(args.db, ERRORS_SQL.format(s=schema, where=where, limit=50), args)
    except DbtLlmError as exc:
        print(exc, file=sys.stderr)
        return 1
    print(_table(columns, rows) if rows else "nothing recorded for this selection")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
