"""The llm_* tables ship as sources of the package: dbt docs knows them and their columns."""

from __future__ import annotations

import json
from typing import Any

from conftest import DbtProject

TABLES = (
    "llm_cache",
    "llm_audit",
    "llm_errors",
    "llm_batch_jobs",
    "llm_batch_job_keys",
    "llm_calls",
    "llm_golden_results",
)


def _artifact(project: DbtProject, name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((project.root / "target" / name).read_text())
    return data


def test_docs_generate_describes_the_llm_tables_with_and_without_them(project: DbtProject) -> None:
    project.write("models/costs.sql", "select sum(cost_usd) as usd from {{ source('dbt_llm', 'llm_audit') }}\n")
    # Without the plugin the tables do not exist (it creates them when dbt connects): sources are
    # metadata, nothing fails.
    project.with_plugin = False
    project.dbt("docs", "generate")
    assert not any(key.startswith("source.dbt_llm.") for key in _artifact(project, "catalog.json")["sources"])

    project.with_plugin = True
    project.write("seeds/t.csv", "id,body\n1,a bug\n")
    project.write(
        "models/one.sql", "select {{ dbt_llm.llm_classify('body', ['bug', 'other']) }} as l from {{ ref('t') }}\n"
    )
    project.dbt("seed")
    project.dbt("run", "--select", "one")
    project.dbt("run", "--select", "costs")  # users' models read the audit through the source
    project.dbt("docs", "generate")
    manifest, catalog = _artifact(project, "manifest.json"), _artifact(project, "catalog.json")
    for table in TABLES:
        source = manifest["sources"][f"source.dbt_llm.dbt_llm.{table}"]
        assert source["schema"] == "dbt_llm" and source["description"]
        documented = {name for name, column in source["columns"].items() if column["description"]}
        in_warehouse = set(catalog["sources"][f"source.dbt_llm.dbt_llm.{table}"]["columns"])
        assert documented == in_warehouse, (table, documented ^ in_warehouse)
    audit = manifest["sources"]["source.dbt_llm.dbt_llm.llm_audit"]["columns"]
    assert "microbatch" in audit["batch_id"]["description"] and "retry" in audit["command"]["description"]


def test_the_source_schema_follows_the_dbt_llm_schema_var(project: DbtProject) -> None:
    project.dbt("parse", "--vars", "{dbt_llm_schema: llm_meta}")
    sources = _artifact(project, "manifest.json")["sources"]
    assert {sources[f"source.dbt_llm.dbt_llm.{t}"]["schema"] for t in TABLES} == {"llm_meta"}
