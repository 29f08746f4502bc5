"""The SQL functions `dbt-llm spark` registers on the session before dbt starts.

Each runs in Spark's Python worker processes, never in the driver: the closures hold only the staging
root (a string) and call module-level functions of worker.py and planning.py, which cloudpickle ships
by reference.
pandas is imported at module level, without `from __future__ import annotations`: pyspark reads the
type hints of a pandas UDF at registration.
"""

import pandas as pd
from pyspark.sql import SparkSession
from pyspark.sql.functions import udf
from pyspark.sql.pandas.functions import pandas_udf
from pyspark.sql.types import StringType

from . import nightly, planning, worker


def _optional(values: "pd.Series[str]") -> list[str | None]:
    return [None if value is None or value != value else str(value) for value in values]


def register(spark: SparkSession, root: str) -> None:
    def answer(
        handles: pd.Series, keys: pd.Series, texts: pd.Series, cached: pd.Series, placement: pd.Series
    ) -> pd.Series:
        # `placement` is a window over the text: it only puts equal texts in one partition (one process).
        results = worker.answer_batch(root, _optional(handles), _optional(keys), _optional(texts), _optional(cached))
        return pd.Series(results, dtype=object)

    def prepare(payload: str) -> str:
        return planning.prepare(payload, root)

    def finish(payload: str) -> str:
        return planning.finish(payload, root)

    def lock(owner: str) -> str:
        return planning.lock(owner, root)

    def unlock(owner: str) -> str:
        return planning.unlock(owner, root)

    def before(payload: str) -> str:
        return nightly.before(payload, root)

    def submit_jobs(payload: str) -> str:
        return nightly.submit(payload, root)

    def collect_jobs(payload: str) -> str:
        return nightly.collect(payload, root)

    def discard_jobs(payload: str) -> str:
        return nightly.discard_jobs(payload, root)

    spark.udf.register("dbt_llm_answer", pandas_udf(answer, StringType()).asNondeterministic())  # type: ignore[call-overload]
    # Each has effects (files), so Spark must neither skip nor repeat it.
    for name, function in (
        ("dbt_llm_prepare", prepare),
        ("dbt_llm_finish", finish),
        ("dbt_llm_discard", planning.discard),
        ("dbt_llm_lock", lock),
        ("dbt_llm_unlock", unlock),
        ("dbt_llm_before", before),
        ("dbt_llm_submit_jobs", submit_jobs),
        ("dbt_llm_collect_jobs", collect_jobs),
        ("dbt_llm_discard_jobs", discard_jobs),
    ):
        spark.udf.register(name, udf(function, StringType(), useArrow=False).asNondeterministic())
