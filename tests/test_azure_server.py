"""The fake Azure OpenAI speaks Azure's routes, key header, rate headers and faults (so tests against it
mean something): checked over plain HTTP."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from azure_server import FakeAzureOpenAI

KEY = "azure-key-0123456789"
VERSION = "?api-version=2024-10-21"
CHAT = {"messages": [{"role": "user", "content": "hello"}], "max_tokens": 10}


@pytest.fixture
def fake() -> Iterator[FakeAzureOpenAI]:
    with FakeAzureOpenAI(api_key=KEY, deployments=("dep",), requests_per_minute=3, tokens_per_minute=10**6) as server:
        yield server


def post(fake: FakeAzureOpenAI, path: str, body: object, key: str | None = KEY) -> httpx.Response:
    headers = {} if key is None else {"api-key": key}
    return httpx.post(fake.base_url + path, json=body, headers=headers)


def test_a_deployment_answers_with_its_name_as_the_model_and_remaining_only_headers(fake: FakeAzureOpenAI) -> None:
    response = post(fake, "/openai/deployments/dep/chat/completions" + VERSION, CHAT)
    assert response.status_code == 200 and response.json()["model"] == "dep"
    assert response.headers["x-ratelimit-remaining-requests"] == "2"
    assert "x-ratelimit-remaining-tokens" in response.headers
    assert not [name for name in response.headers if "limit-requests" in name or "reset" in name]
    embedded = post(fake, "/openai/deployments/dep/embeddings" + VERSION, {"input": ["a", "b"]})
    assert embedded.status_code == 200 and len(embedded.json()["data"]) == 2


def test_the_key_goes_in_api_key_not_authorization(fake: FakeAzureOpenAI) -> None:
    path = "/openai/deployments/dep/chat/completions" + VERSION
    assert post(fake, path, CHAT, key=None).status_code == 401
    assert post(fake, path, CHAT, key="wrong-key-000000").status_code == 401
    bearer = httpx.post(fake.base_url + path, json=CHAT, headers={"Authorization": f"Bearer {KEY}"})
    assert bearer.status_code == 401


@pytest.mark.parametrize(
    "path",
    [
        "/openai/deployments/dep/chat/completions",  # no api-version
        "/openai/deployments/dep/chat/completions?api-version=2099-01-01",
        "/v1/chat/completions",  # OpenAI's route
        "/openai/deployments/dep/completions" + VERSION,
    ],
)
def test_other_routes_and_versions_are_not_found(fake: FakeAzureOpenAI, path: str) -> None:
    response = post(fake, path, CHAT)
    assert response.status_code == 404 and response.json()["error"]["message"] == "Resource not found"


def test_an_unknown_deployment_is_deployment_not_found(fake: FakeAzureOpenAI) -> None:
    response = post(fake, "/openai/deployments/other/chat/completions" + VERSION, CHAT)
    assert response.status_code == 404 and response.json()["error"]["code"] == "DeploymentNotFound"


def test_the_quota_refuses_with_429_and_faults_still_apply(fake: FakeAzureOpenAI) -> None:
    path = "/openai/deployments/dep/chat/completions" + VERSION
    fake.inject("500")
    assert post(fake, path, CHAT).status_code == 500  # an injected fault, admitted: it counts
    assert [post(fake, path, CHAT).status_code for _ in range(3)] == [200, 200, 429]
    refused = post(fake, path, CHAT)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0" and fake.rejected == 2


def test_the_batch_api_lives_under_openai_and_takes_chat_completions_lines(fake: FakeAzureOpenAI) -> None:
    headers = {"api-key": KEY}
    line = {"custom_id": "a", "method": "POST", "url": "/chat/completions", "body": {**CHAT, "model": "dep"}}
    for url, status in (("/v1/chat/completions", 400), ("/chat/completions", 200)):
        files = {"file": ("in.jsonl", json.dumps({**line, "url": url}).encode() + b"\n")}
        response = httpx.post(
            fake.base_url + "/openai/files" + VERSION, data={"purpose": "batch"}, files=files, headers=headers
        )
        assert response.status_code == status, response.text
    file_id = response.json()["id"]
    wrong = {"input_file_id": file_id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    assert httpx.post(fake.base_url + "/openai/batches" + VERSION, json=wrong, headers=headers).status_code == 400
    created = httpx.post(
        fake.base_url + "/openai/batches" + VERSION, json={**wrong, "endpoint": "/chat/completions"}, headers=headers
    )
    assert created.status_code == 200 and created.json()["endpoint"] == "/chat/completions"
    assert httpx.get(fake.base_url + "/openai/batches", headers=headers).status_code == 404  # no api-version
