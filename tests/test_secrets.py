"""The API key appears nowhere: not in target/, logs/, the tables, or error text."""

from __future__ import annotations

import pytest
from conftest import API_KEY, DbtProject

GATEWAY_SECRET = "gw-secret-7c1f9e2ab44d"


def test_key_is_nowhere_after_successful_and_failed_runs(project: DbtProject, monkeypatch: pytest.MonkeyPatch) -> None:
    # A gateway's headers: one plain, one a secret read from the environment.
    monkeypatch.setenv("DBT_LLM_TEST_GATEWAY", GATEWAY_SECRET)
    headers = {"HTTP-Referer": "https://example.com/dbt", "X-Gateway-Key": {"env": "DBT_LLM_TEST_GATEWAY"}}
    project.plugin_config.update(max_attempts=1, batch_poll_interval=0.05, headers=headers)
    project.write("seeds/t.csv", "id,body\n1,a bug\n2,a billing question\n3,please add dark mode\n")
    project.write(
        "models/m.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['bug', 'billing', 'feature']) }} as l from {{ ref('t') }}\n",
    )
    project.write(
        "models/b.sql",
        "select id, {{ dbt_llm.llm_classify('upper(body)', ['bug', 'billing', 'feature']) }} as l "
        "from {{ ref('t') }}\n",
    )
    project.dbt("seed")
    project.server.inject("500", match="dark mode")
    failed = project.dbt("run", "--select", "m", ok=False)
    project.dbt("run", "--select", "m")
    project.dbt("run", "--select", "b", "--vars", "{dbt_llm_mode: batch}")  # files, jobs, llm_batch_jobs
    monkeypatch.setenv("DBT_LLM_TEST_KEY", API_KEY[:-1] + "X")  # a refused key: its error text is checked too
    project.execute("delete from dbt_llm.llm_cache where key in (select key from dbt_llm.llm_cache limit 1)")
    refused = project.dbt("run", ok=False)

    texts = [str(failed.exception), str(refused.exception)]
    texts += [str(r.message) for res in (failed, refused) if res.result for r in res.result]
    for path in project.root.rglob("*"):
        if path.is_file() and "dbt_packages" not in path.parts and path.suffix != ".duckdb":
            texts.append(path.read_text(errors="replace"))
    tables = project.query(
        "select table_schema, table_name, column_name from information_schema.columns where data_type = 'VARCHAR'"
    )
    assert {t[1] for t in tables} >= {"llm_cache", "llm_audit", "llm_errors", "llm_batch_jobs"}
    assert project.server.files  # the batch files the key must not be in either
    texts += [f.content.decode(errors="replace") for f in project.server.files]
    for schema, table, column in tables:
        texts += [str(v[0]) for v in project.query(f'select "{column}" from "{schema}"."{table}"')]
    assert any("refused the API key" in t for t in texts)  # the scan saw the failures
    for text in texts:
        assert API_KEY not in text and API_KEY[:-1] not in text
        assert GATEWAY_SECRET not in text
    # The server did receive it: the scan is not vacuous.
    assert any(r.authorization == f"Bearer {API_KEY}" for r in project.server.requests)
    # The headers went with every request: realtime, files, batches.
    seen = project.server.seen_headers
    assert {path for _, path, _ in seen} >= {"/v1/chat/completions", "/v1/files", "/v1/batches"}
    for method, path, sent in seen:
        assert sent.get("HTTP-Referer") == "https://example.com/dbt", (method, path)
        assert sent.get("X-Gateway-Key") == GATEWAY_SECRET, (method, path)
