"""The same model on dbt-duckdb and on Spark (`dbt-llm spark`, a local session): what Spark costs.

Run from the repo root (no network: a local fake OpenAI server on 127.0.0.1 answers; needs the spark
extra and Java 17)::

    .venv/bin/python benchmarks/spark_bench.py [--rows 2000] [--distinct 500] [--latency 0.05]
                                               [--concurrency 8] [--master local[2]] [--keep]

One model classifies and extracts ``--rows`` support tickets of ``--distinct`` texts; DuckDB runs it
first (the baseline of the ratios), then Spark, each in a fresh project, against a fresh fake server
answering in ``--latency`` seconds, with ``max_concurrency`` ``--concurrency`` (on Spark: per Python
worker, so up to that times the master's cores in flight). Each engine runs the model cold, then warm
(all cached). Columns:

- ``requests``: requests the server got (checked: distinct x 2 cold, 0 warm);
- ``cold_s``, ``warm_s``: wall time of the whole command (dbt's start-up, and on Spark the JVM's and
  the metastore's, included);
- ``rows_per_s``: rows / cold_s; ``cold_x``, ``warm_x``: Spark / DuckDB, from this same run.

Exits 1 when a run fails or the requests differ from what the cache promises: correctness, never timing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_server import FakeOpenAI  # type: ignore[import-not-found]
from spark_project import SparkProject  # type: ignore[import-not-found]

REPO = Path(__file__).resolve().parent.parent
KEY = "sk-bench-0123456789abcdef"
BIN = Path(sys.executable).parent
TICKETS = """
select id, concat('ticket about ', case id % {distinct} % 3 when 0 then 'billing' when 1 then 'bug' else 'other' end,
                  ' number ', cast(id % {distinct} as string)) as body
from range({rows}) t(id)
"""
ENRICHED = """
select id,
  {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'other']) }} as category,
  {{ dbt_llm.llm_extract('body', {'topic': 'string', 'number': 'integer'}) }} as fields
from {{ ref('tickets') }}
"""


def _settings(server: FakeOpenAI, concurrency: int) -> dict[str, object]:
    return {
        "model": "gpt-4o-mini",
        "base_url": server.base_url,
        "api_key_env": "DBT_LLM_BENCH_KEY",
        "max_concurrency": concurrency,
        "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.60}},
    }


def _duckdb_project(root: Path, server: FakeOpenAI, concurrency: int) -> list[str]:
    root.mkdir(parents=True)
    (root / "dbt_project.yml").write_text(
        yaml.safe_dump(
            {"name": "bench", "version": "1.0.0", "config-version": 2, "profile": "bench",
             "models": {"+materialized": "table"}}
        )
    )  # fmt: skip
    (root / "packages.yml").write_text(yaml.safe_dump({"packages": [{"local": str(REPO)}]}))
    plugin = {"module": "dbt_llm.plugin", "config": _settings(server, concurrency)}
    output = {"type": "duckdb", "path": str(root / "bench.duckdb"), "threads": 2, "plugins": [plugin]}
    (root / "profiles.yml").write_text(yaml.safe_dump({"bench": {"target": "dev", "outputs": {"dev": output}}}))
    return [str(BIN / "dbt")]


def _run(command: list[str], root: Path) -> float:
    env = {**os.environ, "DBT_LLM_BENCH_KEY": KEY, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
    started = time.monotonic()
    done = subprocess.run(
        [*command, "--project-dir", str(root), "--profiles-dir", str(root)],
        cwd=root, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if done.returncode != 0:
        print(done.stdout[-4000:], done.stderr[-2000:], sep="\n")
        raise SystemExit(f"FAILED: {' '.join(command[-2:])} in {root}")
    return time.monotonic() - started


def _bench(engine: str, args: argparse.Namespace, work: Path) -> tuple[int, float, int, float]:
    with FakeOpenAI(api_key=KEY, latency=args.latency) as server:
        root = work / engine
        if engine == "duckdb":
            dbt = _duckdb_project(root, server, args.concurrency)
        else:
            SparkProject(root, server.base_url, KEY, config={"api_key_env": "DBT_LLM_BENCH_KEY",
                                                              "max_concurrency": args.concurrency})  # fmt: skip
            os.environ["DBT_LLM_SPARK_MASTER"] = args.master
            dbt = [str(BIN / "dbt-llm"), "spark"]
        (root / "models").mkdir(exist_ok=True)
        (root / "models" / "tickets.sql").write_text(TICKETS.format(rows=args.rows, distinct=args.distinct))
        (root / "models" / "enriched.sql").write_text(ENRICHED)
        _run([*dbt, "deps"], root)
        cold = _run([*dbt, "run"], root)
        cold_requests = len(server.requests)
        warm = _run([*dbt, "run", "--select", "enriched"], root)
        warm_requests = len(server.requests) - cold_requests
    return cold_requests, cold, warm_requests, warm


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--distinct", type=int, default=500)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--keep", action="store_true", help="keep the projects (printed)")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="spark_bench_"))
    distinct = min(args.rows, args.distinct)
    results = {engine: _bench(engine, args, work) for engine in ("duckdb", "spark")}
    base = results["duckdb"]
    print(f"{args.rows} rows, {distinct} distinct texts, 2 functions, latency {args.latency} s, "
          f"max_concurrency {args.concurrency}, Spark master {args.master}")  # fmt: skip
    print(f"{'engine':8} {'requests':>9} {'cold_s':>7} {'rows_per_s':>10} {'warm_req':>8} {'warm_s':>7} "
          f"{'cold_x':>6} {'warm_x':>6}")  # fmt: skip
    failed = False
    for engine, (requests, cold, warm_requests, warm) in results.items():
        print(f"{engine:8} {requests:>9} {cold:>7.1f} {args.rows / cold:>10.1f} {warm_requests:>8} {warm:>7.1f} "
              f"{cold / base[1]:>6.2f} {warm / base[3]:>6.2f}")  # fmt: skip
        if requests != 2 * distinct or warm_requests != 0:
            print(f"FAILED: {engine} sent {requests} cold and {warm_requests} warm; expected {2 * distinct} and 0")
            failed = True
    if args.keep:
        print(f"projects kept in {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
