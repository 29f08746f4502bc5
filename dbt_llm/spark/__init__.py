"""dbt-llm on Apache Spark through dbt-spark's `method: session`: `dbt-llm spark <dbt command>`.

Needs the `spark` extra: pip install 'dbt-llm[spark]'.
"""
