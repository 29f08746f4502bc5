"""Every request body our providers build, realtime and batch, for openai and azure, validated against
the providers' published API descriptions (trimmed copies in tests/data/openapi/, provenance in its
README): the fake servers are not the only judge of the wire format.

Bodies are built by the real code paths (Request.send / the pack's chat through OpenAIProvider and
AzureProvider; BatchRunner.submit through OpenAIBatchClient and AzureBatchClient), captured at the HTTP
seam by httpx.MockTransport. Top-level keys a schema does not declare are refused
(`unevaluatedProperties: false`), so a misspelt or invented parameter fails too."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from _fake_batches import parse_multipart
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from dbt_llm.batch.runner import BatchRunner
from dbt_llm.engine import Budget, Request
from dbt_llm.engine.outcome import chat
from dbt_llm.engine.packing import Pack
from dbt_llm.functions.tasks import Task, build_task, cache_key
from dbt_llm.providers.azure import AzureProvider
from dbt_llm.providers.azure_batch import AzureBatchClient
from dbt_llm.providers.openai import OpenAIProvider
from dbt_llm.providers.openai_batch import OpenAIBatchClient

SPECS = Path(__file__).parent / "data" / "openapi"
KEY = "sk-conformance-key-0123"


def _nullable(node: Any) -> Any:
    """OpenAPI 3.0's `nullable: true` in JSON Schema terms (null is one more allowed type)."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False):
        if isinstance(node.get("type"), str):
            node["type"] = [node["type"], "null"]
        elif "type" not in node:
            return {"anyOf": [{k: v for k, v in node.items() if k != "default"}, {"type": "null"}]}
        if "enum" in node:
            node["enum"] = [*node["enum"], None]
    return node


def _document(name: str) -> dict[str, Any]:
    return _nullable(json.loads((SPECS / f"{name}.json").read_text()))


# Azure's 2024-10-21 inference.json requires `type` inside `json_schema` (next to `name`): a slip of the
# published text (the object has no `type` property; OpenAI's spec and Azure's own service require only
# `name`). The one deviation from the published schemas; test_azure_erratum_is_still_needed keeps it honest.
def _azure_erratum(document: dict[str, Any]) -> dict[str, Any]:
    fixed = copy.deepcopy(document)
    fixed["components"]["schemas"]["ResponseFormatJsonSchema"]["properties"]["json_schema"]["required"] = ["name"]
    return fixed


DOCUMENTS = {"openai": _document("openai"), "azure": _azure_erratum(_document("azure"))}
# The name of each request's schema in each document.
NAMES = {
    "openai": {
        "chat": "CreateChatCompletionRequest",
        "embeddings": "CreateEmbeddingRequest",
        "batch": "CreateBatchRequest",
        "line": "BatchRequestInput",
    },
    "azure": {
        "chat": "createChatCompletionRequest",
        "embeddings": "embeddingsRequest",
        "batch": "BatchCreateRequest",
        "line": "BatchRequestInput",
    },
}


def validator(document: dict[str, Any], schema: dict[str, Any]) -> jsonschema.Draft202012Validator:
    resource = Resource(contents=document, specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:spec", resource)
    return jsonschema.Draft202012Validator({"$id": "urn:check", **schema}, registry=registry)


def strict(document: dict[str, Any], name: str) -> jsonschema.Draft202012Validator:
    """The named request schema, refusing top-level keys it does not declare."""
    return validator(document, {"$ref": f"urn:spec#/components/schemas/{name}", "unevaluatedProperties": False})


def check(provider: str, kind: str, body: dict[str, Any]) -> None:
    document = DOCUMENTS[provider]
    errors = sorted(strict(document, NAMES[provider][kind]).iter_errors(body), key=str)
    assert not errors, f"{provider} {kind} body breaks the published schema: {errors[0].message} in {body}"


def check_line(provider: str, line: dict[str, Any]) -> None:
    """A batch input line: OpenAI publishes the line's shape (BatchRequestInput) and says its body is the
    endpoint's request; Azure's line shape (from its how-to) already holds its body's schema."""
    document, names = DOCUMENTS[provider], NAMES[provider]
    ref = f"urn:spec#/components/schemas/{names['line']}"
    if provider == "openai":
        body = {"$ref": f"urn:spec#/components/schemas/{names['chat']}", "unevaluatedProperties": False}
        schema = {
            "$ref": ref,
            "required": ["custom_id", "method", "url", "body"],
            "properties": {"url": {"const": "/v1/chat/completions"}, "body": body},
            "unevaluatedProperties": False,
        }
    else:
        schema = {"$ref": ref}
        # The body is a chat request plus `model` (the Global-Batch deployment), none other undeclared.
        check("azure", "chat", {key: value for key, value in line["body"].items() if key != "model"})
    errors = list(validator(document, schema).iter_errors(line))
    assert not errors, f"{provider} batch line breaks the published schema: {errors[0].message} in {line}"


# --------------------------------------------------------------------------- #
# The bodies, through our code
# --------------------------------------------------------------------------- #

TASKS = {
    "classify": {"function": "classify", "labels": ["billing", "bug", "other"]},
    "classify_multi": {"function": "classify", "labels": ["billing", "bug"], "multi_label": True},
    "extract": {"function": "extract", "fields": {"city": "string", "zip": "integer", "tier": ["gold", "silver"]}},
    "filter": {"function": "filter", "question": "Is it about billing?"},
    "complete": {"function": "complete", "instructions": "Summarise in five words."},
    "embed": {"function": "embed", "model": "text-embedding-3-small"},
}


def task(kind: str, provider: str) -> Task:
    return build_task(TASKS[kind], provider=provider, default_model="gpt-4o-mini", temperature=0.0)


def request(kind: str, provider: str, text: str = "I was charged twice, from Paris 75001") -> Request:
    built = task(kind, provider)
    return Request(cache_key(built.spec_hash, text), built, text, Budget(None), 4)


def _completion(content: str) -> dict[str, Any]:
    message = {"role": "assistant", "content": content, "refusal": None}
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 0,
        "model": "m",
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
    }


def _answer(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/embeddings"):
        inputs = json.loads(request.content)["input"]
        data = [{"object": "embedding", "index": i, "embedding": [0.0, 1.0]} for i, _ in enumerate(inputs)]
        return httpx.Response(200, json={"object": "list", "data": data, "usage": {"prompt_tokens": 1}})
    return httpx.Response(200, json=_completion("{}"))


def realtime(provider: str, send: Callable[[OpenAIProvider], Any]) -> list[httpx.Request]:
    """The HTTP requests `send` makes through our provider of that name."""
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return _answer(request)

    options: dict[str, Any] = {
        "base_url": "https://res.openai.azure.com" if provider == "azure" else "https://api.openai.com/v1",
        "api_key": lambda: KEY,
        "timeout": 5.0,
        "max_connections": 2,
        "transport": httpx.MockTransport(handler),
    }
    client = AzureProvider(api_version="2024-10-21", **options) if provider == "azure" else OpenAIProvider(**options)

    async def run() -> None:
        try:
            await send(client)
        finally:
            await client.aclose()

    asyncio.run(run())
    return sent


PROVIDERS = ("openai", "azure")
CHAT_KINDS = ("classify", "classify_multi", "extract", "filter", "complete")


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", CHAT_KINDS)
def test_realtime_chat_bodies_follow_the_published_schema(provider: str, kind: str) -> None:
    asked = request(kind, provider)
    sent = realtime(provider, lambda client: asked.send(client, asked.max_tokens))
    body = json.loads(sent[0].content)
    check(provider, "chat", body)
    if kind in ("classify", "filter"):  # the source of with_confidence
        assert body["logprobs"] is True and 0 <= body["top_logprobs"] <= 20
    assert kind == "complete" or body["response_format"]["type"] == "json_schema"  # complete answers free text


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", ("classify", "extract"))
def test_packed_rows_follow_the_published_schema(provider: str, kind: str) -> None:
    rows = [request(kind, provider, text) for text in ("a bug in Oslo", "billing, Paris 75001", "other things")]
    pack = Pack(tuple(rows))
    sent = realtime(provider, lambda client: chat(client, pack, pack.max_tokens))
    body = json.loads(sent[0].content)
    check(provider, "chat", body)
    assert set(body["response_format"]["json_schema"]["schema"]["properties"]) == set(pack.ids)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_embedding_bodies_follow_the_published_schema(provider: str) -> None:
    asked = request("embed", provider)
    sent = realtime(provider, lambda client: asked.send(client, asked.max_tokens))
    check(provider, "embeddings", json.loads(sent[0].content))


def test_azure_requests_go_to_the_deployment_with_api_version_and_api_key() -> None:
    asked, embedded = request("classify", "azure"), request("embed", "azure")

    async def both(client: OpenAIProvider) -> None:
        await asked.send(client, asked.max_tokens)
        await embedded.send(client, embedded.max_tokens)

    chat_request, embed_request = realtime("azure", both)
    assert str(chat_request.url) == (
        "https://res.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21"
    )
    assert embed_request.url.path == "/openai/deployments/text-embedding-3-small/embeddings"
    for sent in (chat_request, embed_request):
        assert sent.headers["api-key"] == KEY and "authorization" not in sent.headers


def batch_submit(provider: str, kinds: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The input lines and the create bodies BatchRunner.submit sends through our batch client."""
    lines: list[dict[str, Any]] = []
    creates: list[dict[str, Any]] = []

    def handler(sent: httpx.Request) -> httpx.Response:
        if sent.url.path.endswith("/files"):
            _, content = parse_multipart(sent.headers["content-type"], sent.content)["file"]
            lines.extend(json.loads(line) for line in content.splitlines())
            return httpx.Response(200, json={"id": "file-1", "object": "file", "purpose": "batch"})
        creates.append(json.loads(sent.content))
        return httpx.Response(200, json={"id": f"batch_{len(creates)}", "object": "batch", "status": "validating"})

    options: dict[str, Any] = {
        "base_url": "https://res.openai.azure.com" if provider == "azure" else "https://api.openai.com/v1",
        "api_key": lambda: KEY,
        "api_key_env": "KEY",
        "transport": httpx.MockTransport(handler),
    }
    client = (
        AzureBatchClient(api_version="2024-10-21", **options) if provider == "azure" else OpenAIBatchClient(**options)
    )
    with client:
        runner = BatchRunner(client)
        for kind in kinds:  # one batch per function: a batch holds one model
            texts = ("a bug in Oslo", "billing, Paris 75001", "other things")
            requests = [request(kind, provider, text) for text in texts]
            runner.submit(requests, lambda _record: None, metadata={"dbt_llm_model": "m"})
    return lines, creates


@pytest.mark.parametrize("provider", PROVIDERS)
def test_batch_lines_and_create_bodies_follow_the_published_schema(provider: str) -> None:
    lines, creates = batch_submit(provider, CHAT_KINDS)
    assert len(lines) >= len(CHAT_KINDS) and len(creates) == len(CHAT_KINDS)
    for line in lines:
        check_line(provider, line)
    for body in creates:
        check(provider, "batch", body)
    expected = "/chat/completions" if provider == "azure" else "/v1/chat/completions"
    assert {line["url"] for line in lines} == {expected} and {body["endpoint"] for body in creates} == {expected}
    assert {line["body"]["model"] for line in lines} == {"gpt-4o-mini"}  # on azure: the deployment name


# --------------------------------------------------------------------------- #
# The checks can fail
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize(
    "bend",
    [
        lambda body: body.update(temprature=0),  # a key the request does not declare
        lambda body: body.update(temperature=3),  # out of range
        lambda body: body.update(top_logprobs=21),
        lambda body: body.pop("messages"),
        lambda body: body["messages"].append({"role": "robot", "content": "x"}),
        lambda body: body.update(response_format={"type": "json_schema"}),
    ],
)
def test_a_bent_body_is_refused(provider: str, bend: Callable[[dict[str, Any]], Any]) -> None:
    asked = request("classify", provider)
    body = json.loads(realtime(provider, lambda client: asked.send(client, asked.max_tokens))[0].content)
    check(provider, "chat", body)
    bend(body)
    with pytest.raises(AssertionError, match="breaks the published schema"):
        check(provider, "chat", body)


def test_a_bent_batch_line_is_refused() -> None:
    lines, _ = batch_submit("azure", ("classify",))
    for bad in ({**lines[0], "url": "/v1/chat/completions"}, {**lines[0], "method": "GET"}):
        with pytest.raises(AssertionError, match="breaks the published schema"):
            check_line("azure", bad)
    openai_lines, _ = batch_submit("openai", ("classify",))
    with pytest.raises(AssertionError, match="breaks the published schema"):
        check_line("openai", {**openai_lines[0], "url": "/chat/completions"})


def test_azure_erratum_is_still_needed() -> None:
    """The published Azure schema, unpatched, refuses a json_schema without `type`, and nothing else."""
    asked = request("classify", "azure")
    body = json.loads(realtime("azure", lambda client: asked.send(client, asked.max_tokens))[0].content)
    published = strict(_document("azure"), "createChatCompletionRequest")
    errors = list(published.iter_errors(body))
    fault = next(error for error in errors if list(error.absolute_path) == ["response_format"])
    slip = [c.message for c in fault.context if list(c.absolute_path) == ["response_format", "json_schema"]]
    assert slip == ["'type' is a required property"]  # the slip is still in the text
    # The rest only echoes it: a failed branch's properties count as unevaluated.
    assert {error.validator for error in errors} == {"oneOf", "unevaluatedProperties"}
    check("azure", "chat", body)
