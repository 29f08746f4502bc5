"""provider: azure end to end: real dbt runs against the fake Azure OpenAI (tests/azure_server.py), realtime
through deployments and batch through Azure's Batch API, with api-version and api-key on every request,
the profile's headers on every request, remaining-only rate headers, and the key nowhere it should not be."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from azure_server import FakeAzureOpenAI
from conftest import API_KEY, PRICES, DbtProject, make_project

pytestmark = pytest.mark.dbt

DEPLOYMENTS = ("gpt-4o-mini", "extractor")
GATEWAY_SECRET = "gw-secret-azure-5d2e81"
HEADERS = {"X-Team": "analytics", "X-Gateway-Key": {"env": "DBT_LLM_TEST_GATEWAY"}}
BATCH = ("--vars", "{dbt_llm_mode: batch}")


@pytest.fixture
def azure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[DbtProject]:
    """An empty dbt project whose profile says provider: azure, against the fake Azure resource."""
    with FakeAzureOpenAI(
        api_key=API_KEY, hang_seconds=5.0, deployments=DEPLOYMENTS, requests_per_minute=6000, tokens_per_minute=10**7
    ) as fake:
        project = make_project(tmp_path, fake, monkeypatch, example=False)
        monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY)  # the default api_key_env of provider azure
        monkeypatch.setenv("DBT_LLM_TEST_GATEWAY", GATEWAY_SECRET)
        del project.plugin_config["api_key_env"]
        project.plugin_config.update(
            provider="azure",
            base_url=fake.base_url,
            headers=HEADERS,
            batch_poll_interval=0.05,
            prices={**PRICES, "extractor": {"input": 1.0, "output": 2.0}},
        )
        project.write("seeds/t.csv", "id,body\n" + "".join(f"{i},ticket {i}: a bug; city: Oslo\n" for i in range(12)))
        project.write(
            "models/c.sql",
            "select id, {{ dbt_llm.llm_classify('body', ['billing', 'bug']) }} as l from {{ ref('t') }}\n",
        )
        project.write(
            "models/x.sql",
            "select id, {{ dbt_llm.llm_extract('body', {'city': 'string'}, model='extractor') }} as addr "
            "from {{ ref('t') }}\n",
        )
        project.dbt("seed")
        yield project


def server_of(project: DbtProject) -> FakeAzureOpenAI:
    assert isinstance(project.server, FakeAzureOpenAI)
    return project.server


def test_classify_and_extract_go_through_deployments_with_api_version_and_api_key(azure: DbtProject) -> None:
    azure.dbt("run")
    server = server_of(azure)
    assert azure.query("select count(*), count(l), count_if(l = 'bug') from c")[0] == (12, 12, 12)
    assert azure.query("select count(*), count(addr.city), count_if(addr.city = 'Oslo') from x")[0] == (12, 12, 12)
    paths = {urlsplit(path).path for path in server.azure_paths}
    assert paths == {f"/openai/deployments/{name}/chat/completions" for name in DEPLOYMENTS}
    assert all(parse_qs(urlsplit(path).query) == {"api-version": ["2024-10-21"]} for path in server.azure_paths)
    assert {r.model for r in server.answered()} == set(DEPLOYMENTS) and len(server.answered()) == 24
    for _, _, sent in server.seen_headers:
        assert sent.get("api-key") == API_KEY and "Authorization" not in sent
    assert server.rejected == 0  # paced under the quota by remaining-only headers, never refused
    rows = azure.query("select model, api_calls, prompt_tokens, completion_tokens, cost_usd from dbt_llm.llm_audit")
    by_model = {row[0]: row[1:] for row in rows}
    for name, (input_price, output_price) in (("gpt-4o-mini", (0.15, 0.60)), ("extractor", (1.0, 2.0))):
        calls, prompt, completion, cost = by_model[name]
        billed = [r for r in server.answered() if r.model == name]
        assert (calls, prompt, completion) == (
            12,
            sum(r.prompt_tokens for r in billed),
            sum(r.completion_tokens for r in billed),
        )
        assert cost == pytest.approx((prompt * input_price + completion * output_price) / 1e6)


def test_a_quota_seen_only_through_remaining_headers_is_not_hammered(azure: DbtProject) -> None:
    # 600 requests a minute counted over 10 s: at most 100 at once, then 10 a second; 150 rows.
    server = server_of(azure)
    azure.write("seeds/t.csv", "id,body\n" + "".join(f"{i},ticket {i}: a bug\n" for i in range(150)))
    azure.dbt("seed")
    server.set_quota(600, None, window_seconds=10)
    azure.dbt("run", "--select", "c")
    assert azure.query("select count(*), count(l) from c")[0] == (150, 150)
    assert server.rejected <= 3, f"{server.rejected} requests got a 429"
    assert azure.query("select rate_limited from dbt_llm.llm_audit")[0][0] == server.rejected


def test_batch_mode_goes_through_azures_batch_api_at_half_price(azure: DbtProject) -> None:
    azure.dbt("run", "--select", "c", *BATCH)
    server = server_of(azure)
    assert server.requests == [] and len(server.batches) == 1  # nothing realtime
    assert azure.query("select count(l) from c")[0][0] == 12
    lines = [line for f in server.files if f.purpose == "batch" for line in f.content.decode().splitlines()]
    assert len(lines) == 12 and all('"url":"/chat/completions"' in line for line in lines)
    assert {r.model for r in server.batch_answered()} == {"gpt-4o-mini"}  # the line's model: the deployment
    paths = {urlsplit(path).path for path in server.azure_paths}
    assert {"/openai/files", "/openai/batches"} <= paths and not any("/v1/" in path for path in paths)
    assert all("api-version=2024-10-21" in path for path in server.azure_paths)
    prompt, completion, cost, answers = azure.query(
        "select prompt_tokens, completion_tokens, cost_usd, batch_answers from dbt_llm.llm_audit"
    )[0]
    billed = server.batch_requests
    assert answers == 12 and (prompt, completion) == (
        sum(r.prompt_tokens for r in billed),
        sum(r.completion_tokens for r in billed),
    )
    assert cost == pytest.approx((prompt * 0.15 + completion * 0.60) / 2 / 1e6)  # half the list price
    azure.dbt("run", "--select", "c", *BATCH)  # collected and cached: nothing sent again
    assert len(server.batches) == 1


def test_an_unknown_deployment_fails_naming_what_to_check(azure: DbtProject) -> None:
    azure.write(
        "models/x.sql",
        "select id, {{ dbt_llm.llm_extract('body', {'city': 'string'}, model='nope') }} as x from {{ ref('t') }}\n",
    )
    failed = azure.dbt("run", "--select", "x", ok=False)
    said = str(failed.exception) + " ".join(str(r.message) for r in failed.result or [])
    for words in ("deployment 'nope'", "base_url", "api_version '2024-10-21'", "does not exist"):
        assert words in said, said


def test_headers_go_with_every_request_and_the_key_is_nowhere(
    azure: DbtProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    azure.dbt("run", "--select", "c")
    azure.dbt("run", "--select", "x", *BATCH)
    monkeypatch.setenv("AZURE_OPENAI_API_KEY", API_KEY[:-1] + "X")  # refused: its error text is scanned too
    azure.execute("delete from dbt_llm.llm_cache")
    refused = azure.dbt("run", "--select", "c", ok=False)
    server = server_of(azure)

    texts = [str(refused.exception), *(str(r.message) for r in refused.result or [])]
    for path in azure.root.rglob("*"):
        if path.is_file() and "dbt_packages" not in path.parts and path.suffix != ".duckdb":
            texts.append(path.read_text(errors="replace"))
    columns = azure.query(
        "select table_schema, table_name, column_name from information_schema.columns where data_type = 'VARCHAR'"
    )
    assert {c[1] for c in columns} >= {"llm_cache", "llm_audit", "llm_errors", "llm_batch_jobs"}
    for schema, table, column in columns:
        texts += [str(v[0]) for v in azure.query(f'select "{column}" from "{schema}"."{table}"')]
    texts += [f.content.decode(errors="replace") for f in server.files]
    assert any("refused the API key" in text for text in texts)  # the scan saw the failure
    for text in texts:
        assert API_KEY not in text and API_KEY[:-1] not in text and GATEWAY_SECRET not in text
    routes = {route for _, route, _ in server.seen_headers}
    assert {"/v1/chat/completions", "/v1/files", "/v1/batches"} <= routes  # realtime, files, batches
    for method, route, sent in server.seen_headers:
        assert sent.get("X-Team") == "analytics" and sent.get("X-Gateway-Key") == GATEWAY_SECRET, (method, route)
