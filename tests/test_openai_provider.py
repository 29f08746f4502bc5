"""OpenAIProvider against httpx.MockTransport: what it sends, how each answer becomes a Completion or
the error that tells the engine whether to retry, and that the API key is read per request and
never shows in an error message."""

from __future__ import annotations

import asyncio
import email.utils
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from dbt_llm.providers import OpenAIProvider
from dbt_llm.providers.base import Completion, FatalProviderError, RowError, TransientError, Usage
from dbt_llm.providers.rate_headers import RateHeaders

KEY = "sk-test-SECRET"
MESSAGES = [{"role": "system", "content": "classify"}, {"role": "user", "content": "<input>\nhi\n</input>"}]
FORMAT = {"type": "json_schema", "json_schema": {"name": "llm_classify", "strict": True, "schema": {}}}
CHAT = {
    "choices": [{"message": {"role": "assistant", "content": '{"label": "bug"}'}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 42, "completion_tokens": 7, "total_tokens": 49},
}
Handler = Callable[[httpx.Request], httpx.Response]


def provider(handler: Handler, api_key: Callable[[], str] = lambda: KEY) -> OpenAIProvider:
    return OpenAIProvider(
        base_url="http://provider.test/v1/",
        api_key=api_key,
        timeout=5.0,
        max_connections=4,
        transport=httpx.MockTransport(handler),
    )


def complete(handler: Handler, *, times: int = 1, api_key: Callable[[], str] = lambda: KEY) -> Completion:
    """Send `times` requests through one provider; the last one's completion (or its error)."""

    async def go() -> Completion:
        client = provider(handler, api_key)
        try:
            for _ in range(times - 1):
                await send(client)
            return await send(client)
        finally:
            await client.aclose()

    return asyncio.run(go())


async def send(client: OpenAIProvider) -> Completion:
    return await client.complete(
        model="gpt-4o-mini", messages=MESSAGES, response_format=FORMAT, max_tokens=64, temperature=0.0
    )


def reply(status: int, body: Any = None, headers: dict[str, str] | None = None, text: str | None = None) -> Handler:
    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, headers=headers, text=text)
        return httpx.Response(status, headers=headers, json=body)

    return handler


def error(message: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "invalid_request_error"}}


def test_the_request_it_sends() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json=CHAT)

    complete(handler)
    [request] = seen
    assert (request.method, str(request.url)) == ("POST", "http://provider.test/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert json.loads(request.content) == {
        "model": "gpt-4o-mini",
        "messages": MESSAGES,
        "response_format": FORMAT,
        "max_tokens": 64,
        "temperature": 0.0,
    }


def test_a_chat_completion_with_its_usage_and_rate_headers() -> None:
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "499",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199951",
    }
    completion = complete(reply(200, CHAT, headers))
    assert completion == Completion('{"label": "bug"}', "stop", Usage(42, 7), RateHeaders(500, 499, 200000, 199951))


def test_an_answer_without_usage_or_rate_headers() -> None:
    body = {"choices": [{"message": {"content": "{}"}, "finish_reason": "length"}]}
    assert complete(reply(200, body)) == Completion("{}", "length", Usage(0, 0), None)


def test_a_refusal_has_no_content_and_finish_reason_refusal() -> None:
    body = {"choices": [{"message": {"content": None, "refusal": "I can't help with that."}, "finish_reason": "stop"}]}
    completion = complete(reply(200, body))
    assert (completion.content, completion.finish_reason) == (None, "refusal")


@pytest.mark.parametrize(
    ("status", "kind"), [(429, "rate_limited"), (500, "server_error"), (502, "server_error"), (503, "server_error")]
)
def test_429_and_5xx_are_transient_with_their_kind_and_message(status: int, kind: str) -> None:
    with pytest.raises(TransientError) as caught:
        complete(reply(status, error("slow down")))
    assert (caught.value.kind, str(caught.value), caught.value.retry_after) == (kind, f"HTTP {status}: slow down", None)


def test_an_html_gateway_page_is_a_transient_server_error() -> None:
    with pytest.raises(TransientError) as caught:
        complete(reply(502, text="<html>\n<body>Bad Gateway</body>\n</html>"))
    assert (caught.value.kind, str(caught.value)) == (
        "server_error",
        "HTTP 502: <html> <body>Bad Gateway</body> </html>",
    )


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),  # the finer one wins
        ({"retry-after": "7"}, 7.0),
        ({"retry-after-ms": "soon", "retry-after": "2"}, 2.0),  # an unreadable one is skipped
        ({"retry-after": email.utils.formatdate(time.time() - 60, usegmt=True)}, 0.0),  # a date past: at once
        ({"retry-after": "whenever"}, None),
    ],
)
def test_retry_after_from_milliseconds_seconds_or_a_date(headers: dict[str, str], seconds: float | None) -> None:
    with pytest.raises(TransientError) as caught:
        complete(reply(429, error("rate limited"), headers))
    assert caught.value.retry_after == seconds


def test_retry_after_as_a_date_to_come_is_the_seconds_until_then() -> None:
    headers = {"retry-after": email.utils.formatdate(time.time() + 3600, usegmt=True)}
    with pytest.raises(TransientError) as caught:
        complete(reply(503, error("maintenance"), headers))
    assert caught.value.retry_after is not None and 3500 < caught.value.retry_after <= 3600


@pytest.fixture
def east_of_greenwich(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A local time zone nine hours ahead of GMT (a POSIX TZ: no tz database needed)."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.mark.usefixtures("east_of_greenwich")
def test_retry_after_as_a_date_of_unknown_zone_is_gmt_not_local_time() -> None:
    headers = {"retry-after": email.utils.formatdate(time.time() + 3600)}  # "... -0000"
    with pytest.raises(TransientError) as caught:
        complete(reply(429, error("rate limited"), headers))
    assert caught.value.retry_after is not None and 3500 < caught.value.retry_after <= 3600


def test_a_429_carries_the_rate_headers_the_limiter_learns_from() -> None:
    headers = {"x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "0", "retry-after": "1"}
    with pytest.raises(TransientError) as caught:
        complete(reply(429, error("rate limited"), headers))
    assert caught.value.rate == RateHeaders(limit_requests=60, remaining_requests=0)


@pytest.mark.parametrize("status", [401, 403])
def test_a_refused_key_is_fatal_and_says_where_to_fix_it(status: int) -> None:
    with pytest.raises(FatalProviderError) as caught:
        complete(reply(status, error("Incorrect API key provided")))
    message = str(caught.value)
    assert f"refused the API key (HTTP {status}: Incorrect API key provided)" in message
    assert "api_key_env" in message


def test_404_is_fatal_and_names_the_url_and_the_model() -> None:
    with pytest.raises(FatalProviderError) as caught:
        complete(reply(404, error("The model `gpt-4o-mini` does not exist")))
    message = str(caught.value)
    assert "HTTP 404 from http://provider.test/v1/chat/completions: The model `gpt-4o-mini` does not exist" in message
    # Nothing answered before: base_url is the likely culprit, and the model is named too.
    assert "base_url http://provider.test/v1 has answered yet" in message and "ends in /v1" in message
    assert "model 'gpt-4o-mini'" in message


def test_a_404_after_answers_is_about_the_model() -> None:
    answers = iter([httpx.Response(200, json=CHAT), httpx.Response(404, json=error("no such model"))])
    with pytest.raises(FatalProviderError) as caught:
        complete(lambda _request: next(answers), times=2)
    message = str(caught.value)
    assert "HTTP 404 from http://provider.test/v1/chat/completions: no such model, for model 'gpt-4o-mini'" in message
    assert "has answered yet" not in message


@pytest.mark.parametrize("status", [400, 413, 422])
def test_other_4xx_fail_only_this_row_as_bad_request(status: int) -> None:
    with pytest.raises(RowError) as caught:
        complete(reply(status, error("maximum context length is 128000 tokens")))
    assert (caught.value.kind, str(caught.value)) == (
        "bad_request",
        f"HTTP {status}: maximum context length is 128000 tokens",
    )


@pytest.mark.parametrize(
    "body",
    [
        {"object": "list", "data": []},
        {"choices": []},
        {"choices": [None]},
        {"choices": [{"message": "text"}]},
        {"choices": [{"message": {"content": "{}"}}], "usage": {"prompt_tokens": "many"}},
        "not json",
    ],
)
def test_a_200_that_is_not_a_chat_completion_is_a_transient_bad_response(body: Any) -> None:
    handler = reply(200, text=body) if isinstance(body, str) else reply(200, body)
    with pytest.raises(TransientError) as caught:
        complete(handler)
    assert caught.value.kind == "bad_response"
    assert str(caught.value).startswith("HTTP 200 with a body that is not a chat completion: ")


def test_transport_failures_are_transient_timeout_unreachable_or_connection() -> None:
    def timeout(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    def refused(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    with pytest.raises(TransientError) as caught:
        complete(timeout)
    assert (caught.value.kind, str(caught.value)) == ("timeout", "request timed out (ReadTimeout)")

    def reset(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadError("[Errno 104] Connection reset by peer", request=request)

    with pytest.raises(TransientError) as caught:
        complete(refused)
    assert (caught.value.kind, str(caught.value)) == (
        "unreachable",
        "cannot connect to base_url http://provider.test/v1 (ConnectError: [Errno 111] Connection refused)",
    )
    with pytest.raises(TransientError) as caught:
        complete(reset)
    assert (caught.value.kind, str(caught.value)) == (
        "connection",
        "connection to http://provider.test/v1 failed (ReadError: [Errno 104] Connection reset by peer)",
    )


def test_the_key_is_read_for_each_request_so_a_rotated_key_is_used() -> None:
    keys = iter(["sk-old", "sk-new"])
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json=CHAT)

    complete(handler, times=2, api_key=lambda: next(keys))
    assert seen == ["Bearer sk-old", "Bearer sk-new"]


def echo_key(status: int, *, json_body: bool = True) -> Handler:
    """A provider that quotes the Authorization header it got back in its error (some proxies do)."""

    def handler(request: httpx.Request) -> httpx.Response:
        said = f"{request.headers['authorization']} is not a valid key"
        if json_body:
            return httpx.Response(status, json=error(said))
        return httpx.Response(status, text="x" * 183 + said)  # the key straddles the 200 characters quoted

    return handler


@pytest.mark.parametrize(
    ("handler", "raised"),
    [
        (echo_key(429), TransientError),
        (echo_key(500), TransientError),
        (echo_key(401), FatalProviderError),
        (echo_key(403), FatalProviderError),
        (echo_key(404), FatalProviderError),
        (echo_key(400), RowError),
        (echo_key(200), TransientError),  # bad_response: the JSON is an error, not a completion
        (echo_key(200, json_body=False), TransientError),
        (echo_key(503, json_body=False), TransientError),
    ],
)
def test_the_key_never_appears_in_an_error_message(handler: Handler, raised: type[Exception]) -> None:
    with pytest.raises(raised) as caught:
        complete(handler)
    message = str(caught.value)
    assert "is not a valid key" in message or "x" * 183 in message  # the provider's words are quoted ...
    assert "SECRET" not in message and "sk-test" not in message  # ... but not the key, not even in part


def embed(handler: Handler, inputs: list[str], dimensions: int | None = None) -> Any:
    async def go() -> Any:
        client = provider(handler)
        try:
            return await client.embed(model="text-embedding-3-small", inputs=inputs, dimensions=dimensions)
        finally:
            await client.aclose()

    return asyncio.run(go())


def test_embeddings_are_posted_to_their_route_and_matched_by_index() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        data = [{"index": 1, "embedding": [0.0, 1.0]}, {"index": 0, "embedding": [1.0, 0.0]}]  # any order
        return httpx.Response(200, json={"data": data, "usage": {"prompt_tokens": 9, "total_tokens": 9}})

    result = embed(handler, ["a", "b"], dimensions=2)
    assert result.vectors == [[1.0, 0.0], [0.0, 1.0]] and result.usage == Usage(9, 0)
    assert str(seen[0].url) == "http://provider.test/v1/embeddings"
    body = json.loads(seen[0].content)
    assert body == {"model": "text-embedding-3-small", "input": ["a", "b"], "encoding_format": "float", "dimensions": 2}
    assert seen[0].headers["authorization"] == f"Bearer {KEY}"


def test_embeddings_fail_as_chat_requests_do() -> None:
    with pytest.raises(TransientError) as error:
        embed(lambda _r: httpx.Response(503, json={"error": {"message": "busy"}}), ["a"])
    assert error.value.kind == "server_error"
    with pytest.raises(RowError):
        embed(lambda _r: httpx.Response(400, json={"error": {"message": "input too long"}}), ["a"])
    missing = {"data": [{"index": 0, "embedding": [1.0]}], "usage": {}}
    with pytest.raises(TransientError, match="not a list of 2 embeddings"):
        embed(lambda _r: httpx.Response(200, json=missing), ["a", "b"])


def test_a_free_text_request_sends_no_response_format() -> None:
    seen: list[dict[str, Any]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200, json=CHAT)

    async def go() -> None:
        client = provider(handler)
        try:
            await client.complete(model="m", messages=MESSAGES, response_format=None, max_tokens=8, temperature=0.0)
        finally:
            await client.aclose()

    asyncio.run(go())
    assert "response_format" not in seen[0]
