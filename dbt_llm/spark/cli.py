"""`dbt-llm spark <dbt command and flags>`: dbt on a SparkSession with dbt-llm's functions registered.

Before dbt starts and after it ends, answers staged by an earlier run that never reached its post-hook
(a killed job, a failed model, a `dbt show`) are merged into the tables, so a rerun pays only for what
was in flight.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

from dbt.cli.main import dbtRunner, dbtRunnerResult
from pyspark.sql import SparkSession

from ..errors import DbtLlmError
from . import session, udfs
from .jobs import JobFiles, jobs_dir, jobs_merge, read_jobs
from .staging import MERGE_LOCK, discard, forget_calls, node_dirs
from .tables import MIGRATIONS_TABLE, merge, migrations, quote


def ensure_tables(spark: SparkSession, schema: str) -> None:
    s = quote(schema)
    spark.sql(f"create database if not exists {s}")
    spark.sql(MIGRATIONS_TABLE.format(s=s))
    applied = {row[0] for row in spark.sql(f"select `name` from {s}.llm_migrations").collect()}
    for name, statements in migrations(schema):
        for statement in statements if name not in applied else []:
            spark.sql(statement)


def merge_leftovers(spark: SparkSession, root: str, status: str) -> int:
    """Merge every model directory left in staging; their audit rows say `status` (or `preview`):
    `interrupted` before dbt starts (a killed run left them), `error` after it ended (a model whose
    statement failed before its post-hook)."""
    merged = 0
    for node in node_dirs(Path(root)):
        ensure_tables(spark, node.schema)
        plan = merge(node, status)
        for statement in plan.statements:
            spark.sql(statement)
        for statement in plan.drop_views:
            spark.sql(statement)
        discard(node.path)
        merged += 1
    merge_jobs(spark, root)
    return merged


def merge_jobs(spark: SparkSession, root: str) -> None:
    """Staged batch jobs into llm_batch_jobs (a killed run may have created one it never recorded
    there); the files of collected jobs then go, those of open jobs stay for the next run to collect."""
    for schema in sorted({str(lines[0].get("schema")) for lines in read_jobs(jobs_dir(Path(root)))}):
        ensure_tables(spark, schema)
        for statement in jobs_merge(Path(root), schema):
            spark.sql(statement)
        files = JobFiles(Path(root), schema)
        files.discard(files.collected_ids())


def _project_dir(argv: Sequence[str]) -> Path:
    args = list(argv)
    for i, arg in enumerate(args):
        if arg == "--project-dir" and i + 1 < len(args):
            return Path(args[i + 1])
        if arg.startswith("--project-dir="):
            return Path(arg.split("=", 1)[1])
    return Path.cwd()


# dbt commands that open no connection: run as they are, without starting Spark.
_NO_SESSION = frozenset({"deps", "clean", "init", "--version", "-h", "--help"})


def _outcome(result: dbtRunnerResult) -> int:
    if result.exception is not None:
        return 2
    return 0 if result.success else 1


def run(argv: Sequence[str]) -> int:
    if not argv:
        print("usage: dbt-llm spark <dbt command and flags>, e.g. dbt-llm spark run --select my_model", file=sys.stderr)
        return 2
    if argv[0] in _NO_SESSION:
        return _outcome(dbtRunner().invoke(list(argv)))
    started = time.time()
    try:
        if session.under_spark_submit():
            spark, held = session.join(), None
        else:
            state = session.state_dir(_project_dir(argv))
            held = session.lock(state)
            spark = session.start(state)
    except DbtLlmError as exc:
        print(f"dbt-llm spark: {exc}", file=sys.stderr)
        return 2
    try:
        root = session.staging_root(spark)
        udfs.register(spark, root)
        merge_leftovers(spark, root, "interrupted")
        if held is not None:  # this process holds the project: what is left is a dead run's
            forget_calls(Path(root), since=0)
            (Path(root) / MERGE_LOCK).unlink(missing_ok=True)
            session.drop_orphan_tables(spark, state)
        result = dbtRunner().invoke(list(argv))
        merge_leftovers(spark, root, "error")
        forget_calls(Path(root), since=started)
        return _outcome(result)
    finally:
        if held is not None:
            spark.stop()
            held.close()
