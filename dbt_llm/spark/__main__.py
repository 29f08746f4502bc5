"""`python -m dbt_llm.spark <dbt args>`, or this file given to spark-submit, which then owns the session:
spark-submit --conf spark.dbt_llm.staging=<shared dir> .../dbt_llm/spark/__main__.py run --select ..."""

import sys

from dbt_llm.spark.cli import run  # absolute: spark-submit runs this file as a script

if __name__ == "__main__":
    raise SystemExit(run(sys.argv[1:]))
