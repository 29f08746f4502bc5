"""The SparkSession `dbt-llm spark` runs dbt in: joined under spark-submit, otherwise started locally
with Hive support, so the llm_* tables (the cache!) outlive the process."""

from __future__ import annotations

import fcntl
import os
import shutil
import sys
from pathlib import Path
from typing import IO

from pyspark.sql import SparkSession

from ..errors import DbtLlmError

STAGING_CONF = "spark.dbt_llm.staging"
# A local session runs many small statements and is gone in minutes: the JVM's C1 compiler alone
# warms up at a fraction of the CPU (a warm `dbt build` of two models: 105 s -> 80-87 s on 2 cores).
JAVA_OPTIONS = "-XX:TieredStopAtLevel=1"


class SparkStartError(DbtLlmError):
    """The session could not start, or another `dbt-llm spark` holds this project's metastore."""


def state_dir(project_dir: Path) -> Path:
    """The local warehouse, metastore and staging: $DBT_LLM_SPARK_HOME or .dbt_llm_spark in the project."""
    return Path(os.environ.get("DBT_LLM_SPARK_HOME") or project_dir / ".dbt_llm_spark").resolve()


def under_spark_submit() -> bool:
    return "PYSPARK_GATEWAY_PORT" in os.environ  # set by spark-submit for the Python driver


def lock(state: Path) -> IO[str]:
    """The embedded Derby metastore takes one JVM at a time: a second process fails now, clearly,
    instead of retrying its connection for minutes."""
    state.mkdir(parents=True, exist_ok=True)
    handle = open(state / "dbt-llm-spark.lock", "w")  # noqa: SIM115 - held for the process's life
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise SparkStartError(
            f"another `dbt-llm spark` is running on {state} (its embedded metastore takes one process at a "
            "time). Wait for it, or set DBT_LLM_SPARK_HOME to another directory."
        ) from None
    return handle


def start(state: Path) -> SparkSession:
    """A local session: `local[*]` (or $DBT_LLM_SPARK_MASTER), warehouse and metastore under `state`."""
    # Workers run this interpreter (the venv's), not the system Python; set before the JVM starts.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    builder = (
        SparkSession.builder.master(os.environ.get("DBT_LLM_SPARK_MASTER", "local[*]"))
        .appName("dbt-llm")
        .config("spark.sql.warehouse.dir", str(state / "warehouse"))
        .config(
            "spark.driver.extraJavaOptions",
            f"-Dderby.system.home={state} {os.environ.get('DBT_LLM_SPARK_JAVA_OPTIONS', JAVA_OPTIONS)}",
        )
        .config(
            "spark.hadoop.javax.jdo.option.ConnectionURL", f"jdbc:derby:;databaseName={state}/metastore_db;create=true"
        )
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config(STAGING_CONF, str(state / "staging"))
        .enableHiveSupport()
    )
    spark = builder.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    # One machine: as many shuffle partitions as task slots, not the cluster default of 200.
    spark.conf.set("spark.sql.shuffle.partitions", str(spark.sparkContext.defaultParallelism))
    return spark


def drop_orphan_tables(spark: SparkSession, state: Path) -> list[Path]:
    """A run killed inside `create table ... as` leaves the table's directory in the local warehouse with
    no catalog entry, and the rerun's create then fails with LOCATION_ALREADY_EXISTS: remove those."""
    removed: list[Path] = []
    for database in sorted((state / "warehouse").glob("*.db")):
        for table in sorted(p for p in database.iterdir() if p.is_dir()):
            if not spark.catalog.tableExists(f"`{database.stem}`.`{table.name}`"):
                shutil.rmtree(table, ignore_errors=True)
                removed.append(table)
    return removed


def join() -> SparkSession:
    """Under spark-submit: the session its flags configure; the staging root must be set there."""
    spark = SparkSession.builder.enableHiveSupport().getOrCreate()
    if not spark.conf.get(STAGING_CONF, None):
        raise SparkStartError(
            f"set --conf {STAGING_CONF}=<a directory every executor can write and the driver can read> "
            "(answers are kept there as they arrive, until the driver merges them into the cache)."
        )
    return spark


def staging_root(spark: SparkSession) -> str:
    root = spark.conf.get(STAGING_CONF, None)
    assert root is not None
    return str(root)
