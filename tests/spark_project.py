"""A throwaway dbt project on a local Spark session (dbt-spark `method: session`), run through
`dbt-llm spark` in a child process, with the tables read back from their parquet files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import yaml

REPO = Path(__file__).resolve().parent.parent
DBT_LLM = str(Path(sys.executable).parent / "dbt-llm")


class SparkProject:
    def __init__(self, root: Path, base_url: str, api_key: str, *, config: dict[str, Any] | None = None) -> None:
        self.root = root
        self.state = root / ".dbt_llm_spark"
        self.api_key = api_key
        root.mkdir(parents=True, exist_ok=True)
        settings = {
            "model": "gpt-4o-mini",
            "base_url": base_url,
            "api_key_env": "DBT_LLM_TEST_KEY",
            "max_concurrency": 4,
            "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.60}},
            "request_timeout": 10.0,
            "max_attempts": 4,
            **(config or {}),
        }
        project = {
            "name": "spark_llm",
            "version": "1.0.0",
            "config-version": 2,
            "profile": "spark_llm",
            "models": {"+materialized": "table"},
            "vars": {"dbt_llm": settings},
        }
        (root / "dbt_project.yml").write_text(yaml.safe_dump(project))
        (root / "packages.yml").write_text(yaml.safe_dump({"packages": [{"local": str(REPO)}]}))
        profile = {"type": "spark", "method": "session", "host": "NA", "schema": "analytics", "threads": 2}
        (root / "profiles.yml").write_text(
            yaml.safe_dump({"spark_llm": {"target": "dev", "outputs": {"dev": profile}}})
        )

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
        env.update(
            DBT_LLM_TEST_KEY=self.api_key, DBT_SEND_ANONYMOUS_USAGE_STATS="false", DBT_LLM_SPARK_MASTER="local[2]"
        )
        return env

    def command(self, *args: str) -> list[str]:
        return [DBT_LLM, "spark", *args, "--project-dir", str(self.root), "--profiles-dir", str(self.root)]

    def dbt(self, *args: str, ok: bool = True, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.command(*args), cwd=self.root, env=self.env(), capture_output=True, text=True, timeout=timeout
        )
        if ok:
            assert done.returncode == 0, (
                f"dbt-llm spark {' '.join(args)} failed:\n{done.stdout[-6000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def start(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.command(*args), cwd=self.root, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, start_new_session=True,
        )  # fmt: skip

    def table(self, name: str, schema: str = "dbt_llm") -> str:
        """A table's parquet files, for DuckDB's read_parquet."""
        return str(self.state / "warehouse" / f"{schema}.db" / name / "*.parquet")

    def query(self, sql: str) -> list[tuple[Any, ...]]:
        """DuckDB over the tables' files: {name} and {schema.name} are tables of the Spark warehouse."""

        def path(name: str) -> str:
            schema, _, table = name.rpartition(".")
            return f"read_parquet('{self.table(table, schema or 'dbt_llm')}')"

        names = ("llm_cache", "llm_audit", "llm_errors", "llm_batch_jobs", "llm_batch_job_keys")
        for name in (f"dbt_llm.{table}" for table in names):
            sql = sql.replace("{" + name + "}", path(name))
        with duckdb.connect() as con:
            return con.execute(sql).fetchall()

    def model_rows(self, name: str) -> list[tuple[Any, ...]]:
        with duckdb.connect() as con:
            return con.execute(f"select * from read_parquet('{self.table(name, 'analytics')}') order by 1").fetchall()


def show_json(done: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    """The rows `dbt show --output json` printed."""
    out = done.stdout
    start = out.index('{\n  "show"')
    data, _ = json.JSONDecoder().raw_decode(out[start:])
    rows: list[dict[str, Any]] = data["show"]
    return rows
