"""`headers:`: sent on every request, values from the environment read per request, never in a message."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from dbt_llm.config import parse_config
from dbt_llm.config.headers import FromEnv
from dbt_llm.errors import ConfigError
from dbt_llm.providers.base import RowError
from dbt_llm.providers.openai import OpenAIProvider
from dbt_llm.providers.openai_batch import BatchApiError, OpenAIBatchClient

SECRET = "gw-7d2c0f8e9a1b44"


def test_headers_take_text_numbers_and_env_names() -> None:
    config = parse_config({"headers": {"HTTP-Referer": "https://example.com", "X-Tier": 2, "X-Key": {"env": "GW"}}})
    assert config.headers == {"HTTP-Referer": "https://example.com", "X-Tier": "2", "X-Key": FromEnv("GW")}
    assert parse_config({}).headers == {} and parse_config({"headers": None}).headers == {}


def test_an_env_value_is_read_when_sent_and_a_missing_one_names_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    config = parse_config({"headers": {"X-Key": {"env": "DBT_LLM_TEST_GW"}}})
    monkeypatch.delenv("DBT_LLM_TEST_GW", raising=False)
    with pytest.raises(ConfigError, match=r"DBT_LLM_TEST_GW \(config key `headers.X-Key`\) is not set"):
        config.request_headers()
    monkeypatch.setenv("DBT_LLM_TEST_GW", "one")
    assert config.request_headers() == {"X-Key": "one"}
    monkeypatch.setenv("DBT_LLM_TEST_GW", "two")  # rotated: picked up by the next request
    assert config.request_headers() == {"X-Key": "two"}


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Authorization": "Bearer x"}, "`headers` sets Authorization. dbt-llm sets Authorization itself"),
        ({"x-api-key": "x"}, "`headers` sets x-api-key."),
        ({"bad name": "x"}, "`headers` has a bad name."),
        ({"X-Key": {"environment": "GW"}}, "`headers.X-Key` is not a header value. Give it text, or {env: NAME}"),
        ({"X-Key": None}, "`headers.X-Key` is not a header value."),
        (["X-Key"], "`headers` is not a mapping."),
    ],
)
def test_bad_headers_name_the_key_and_the_fix(headers: object, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"headers": headers})
    assert expected in str(info.value)


def test_a_literal_value_is_never_shown_in_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"headers": {"X-Key": [SECRET]}})
    assert SECRET not in str(info.value)


def echo(request: httpx.Request) -> httpx.Response:
    """A gateway that quotes the header it refused."""
    return httpx.Response(400, json={"error": {"message": f"bad gateway key {request.headers['x-gateway-key']}"}})


def test_the_realtime_client_sends_them_and_never_quotes_them() -> None:
    async def go() -> None:
        client = OpenAIProvider(
            base_url="http://gw.test/v1",
            api_key=lambda: "sk-test-key-123456",
            timeout=5.0,
            max_connections=2,
            transport=httpx.MockTransport(echo),
            headers=lambda: {"X-Gateway-Key": SECRET},
        )
        try:
            await client.complete(model="m", messages=[], response_format=None, max_tokens=5, temperature=0.0)
        finally:
            await client.aclose()

    with pytest.raises(RowError) as info:
        asyncio.run(go())
    assert "bad gateway key [redacted]" in str(info.value) and SECRET not in str(info.value)


def test_the_batch_client_sends_them_and_never_quotes_them() -> None:
    client = OpenAIBatchClient(
        base_url="http://gw.test/v1",
        api_key=lambda: "sk-test-key-123456",
        api_key_env="K",
        transport=httpx.MockTransport(echo),
        headers=lambda: {"X-Gateway-Key": SECRET},
    )
    with client, pytest.raises(BatchApiError) as info:
        client.get("batch_1")
    assert "bad gateway key [redacted]" in str(info.value) and SECRET not in str(info.value)
