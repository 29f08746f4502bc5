"""Any OpenAI-compatible chat-completions endpoint, over httpx."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import httpx

from .base import Completion, Embeddings, FatalProviderError, RowError, TokenLogprob, TransientError, Usage
from .http import error_message, not_a, not_connected, parse_retry_after, redact, shown_url
from .rate_headers import RateHeaders

__all__ = ["OpenAIProvider", "chat_body", "completion_of", "parse_retry_after", "shown_url", "usage_of"]


def usage_of(usage: Any) -> Usage:
    """A response's `usage`, with `prompt_tokens_details.cached_tokens` (absent: none cached)."""
    usage = usage if isinstance(usage, dict) else {}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    return Usage(int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0), int(cached or 0))


def _token_bytes(item: dict[str, Any]) -> bytes:
    raw = item.get("bytes")
    if isinstance(raw, list):
        return bytes(raw)  # exact even when a token is part of a UTF-8 character
    return str(item["token"]).encode()


def logprobs_of(choice: dict[str, Any]) -> tuple[TokenLogprob, ...] | None:
    """`choices[0].logprobs.content[]`: {token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]};
    None when absent or unreadable (the answer stands, its confidence is unknown)."""
    logprobs = choice.get("logprobs")
    content = logprobs.get("content") if isinstance(logprobs, dict) else None
    if not isinstance(content, list) or not content:
        return None
    try:
        return tuple(
            TokenLogprob(
                _token_bytes(item),
                float(item["logprob"]),
                tuple((_token_bytes(alt), float(alt["logprob"])) for alt in item.get("top_logprobs") or ()),
            )
            for item in content
        )
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def completion_of(body: Any, rate: RateHeaders | None = None) -> Completion:
    """A chat completion body, realtime or a batch line's: a refusal has no content. Raises KeyError,
    IndexError, TypeError or AttributeError when the body is not a chat completion."""
    choice = body["choices"][0]
    message = choice.get("message") or {}
    refused = bool(message.get("refusal"))
    return Completion(
        content=None if refused else message.get("content"),
        finish_reason="refusal" if refused else choice.get("finish_reason"),
        usage=usage_of(body.get("usage")),
        rate=rate,
        logprobs=None if refused else logprobs_of(choice),
    )


def chat_body(
    model: str,
    messages: list[dict[str, str]],
    response_format: dict[str, Any] | None,
    max_tokens: int,
    temperature: float,
    top_logprobs: int | None = None,
) -> dict[str, Any]:
    """The body of one chat completion: posted in real time, and the `body` of a batch line."""
    body: dict[str, Any] = {"model": model, "messages": messages}
    if response_format is not None:
        body["response_format"] = response_format
    body.update(max_tokens=max_tokens, temperature=temperature)
    if top_logprobs is not None:
        body.update(logprobs=True, top_logprobs=top_logprobs)
    return body


_SHARD_CONNECTIONS = 16


class OpenAIProvider:
    name = "openai"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Callable[[], str],
        timeout: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
        trust_env: bool = True,
        headers: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self._root = base_url.rstrip("/")
        self._base = shown_url(self._root)
        self._api_key = api_key
        self._headers = headers  # the profile's `headers:`, read per request like the key
        self._answered = False  # a 2xx came back: a 404 is then about the model, not base_url
        self._no_logprobs: set[str] = set()  # models whose endpoint refused logprobs with a 400
        # httpcore scans every connection of a pool on each request event, a cost that grows with the
        # square of the pool: at 100+ requests in flight that alone saturates a core. Small pools keep it cheap.
        shards = 1 if transport is not None else max(1, math.ceil(max_connections / _SHARD_CONNECTIONS))
        per_shard = math.ceil(max_connections / shards)
        self._clients = [
            httpx.AsyncClient(
                timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
                limits=httpx.Limits(max_connections=per_shard, max_keepalive_connections=per_shard),
                transport=transport,
                trust_env=trust_env,
            )
            for _ in range(shards)
        ]
        self._busy = [0] * shards  # requests in flight per client

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        response_format: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
        top_logprobs: int | None = None,
    ) -> Completion:
        asks = top_logprobs is not None and model not in self._no_logprobs
        body = chat_body(model, messages, response_format, max_tokens, temperature, top_logprobs if asks else None)
        try:
            response, secrets = await self._post(self.route(model, "chat/completions"), body, model)
        except RowError as exc:
            # Some models refuse logprobs (reasoning models, some gateways): answer without them, and
            # stop asking this model; those answers' confidence is NULL.
            if not asks or "logprob" not in str(exc).lower():
                raise
            self._no_logprobs.add(model)
            body = chat_body(model, messages, response_format, max_tokens, temperature)
            response, secrets = await self._post(self.route(model, "chat/completions"), body, model)
        try:
            return completion_of(response.json(), RateHeaders.parse(dict(response.headers)))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise not_a(response, "chat completion", secrets) from None

    async def embed(self, *, model: str, inputs: list[str], dimensions: int | None) -> Embeddings:
        """`/embeddings`: one vector per input, matched by each item's `index`."""
        body: dict[str, Any] = {"model": model, "input": inputs, "encoding_format": "float"}
        if dimensions is not None:
            body["dimensions"] = dimensions
        response, secrets = await self._post(self.route(model, "embeddings"), body, model)
        try:
            data = response.json()
            by_index = {int(item["index"]): [float(x) for x in item["embedding"]] for item in data["data"]}
            vectors = [by_index[i] for i in range(len(inputs))]
            return Embeddings(vectors, usage_of(data.get("usage")), RateHeaders.parse(dict(response.headers)))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise not_a(response, f"list of {len(inputs)} embeddings", secrets) from None

    async def _post(self, url: str, body: dict[str, Any], model: str) -> tuple[httpx.Response, list[str]]:
        """POST with the key and the profile's headers; a 2xx response and the secrets it was sent
        with (to keep out of messages), else the error that says whether to retry."""
        # Read per request: a fully cached run never needs a key, and a rotated key is picked up.
        key = self._api_key()
        extra = self._headers()
        secrets = [key, *extra.values()]
        shard = min(range(len(self._busy)), key=self._busy.__getitem__)
        self._busy[shard] += 1
        try:
            headers = {**extra, **self.auth(key)}  # config refuses an Authorization of its own
            response = await self._clients[shard].post(url, json=self.wire(body), headers=headers)
        except httpx.TimeoutException as exc:
            raise TransientError("timeout", f"request timed out ({type(exc).__name__})") from None
        except httpx.ConnectError as exc:  # refused, DNS, TLS: nothing to talk to at base_url
            said = redact(f"cannot connect to base_url {self._base} ({not_connected(exc)})", secrets)
            raise TransientError("unreachable", said) from None
        except httpx.TransportError as exc:
            said = redact(f"connection to {self._base} failed ({type(exc).__name__}: {exc})", secrets)
            raise TransientError("connection", said) from None
        finally:
            self._busy[shard] -= 1
        status = response.status_code
        if status == 429 or status >= 500:
            kind = "rate_limited" if status == 429 else "server_error"
            raise TransientError(
                kind,
                f"HTTP {status}: {error_message(response, secrets)}",
                parse_retry_after(response.headers),
                RateHeaders.parse(dict(response.headers)),
            )
        if status in (401, 403):
            raise FatalProviderError(
                f"the provider at {url} refused the API key (HTTP {status}: {error_message(response, secrets)}). "
                "Check the key in the environment variable named by `api_key_env`."
            )
        if status == 404:
            raise FatalProviderError(self._not_found(response, secrets, model))
        if status >= 400:
            raise RowError("bad_request", f"HTTP {status}: {error_message(response, secrets)}")
        self._answered = True
        return response, secrets

    # -- what another dialect of this protocol changes (Azure OpenAI: providers/azure.py) --
    def route(self, model: str, operation: str) -> str:
        """The URL of `operation` (chat/completions, embeddings) for `model`."""
        return f"{self._root}/{operation}"

    def auth(self, key: str) -> dict[str, str]:
        """The header that carries the key."""
        return {"Authorization": f"Bearer {key}"}

    def wire(self, body: dict[str, Any]) -> dict[str, Any]:
        """The body as posted (chat_body's, or an embeddings request's)."""
        return body

    def _not_found(self, response: httpx.Response, secrets: list[str], model: str) -> str:
        said = f"HTTP 404 from {shown_url(str(response.request.url))}: {error_message(response, secrets)}"
        if not self._answered:
            return (
                f"{said}. Nothing at base_url {self._base} has answered yet: it is probably wrong (it usually "
                "ends in /v1, e.g. https://api.openai.com/v1); or the provider does not know model "
                f"{model!r}. Check `base_url` in the dbt_llm plugin config and the model name."
            )
        return f"{said}, for model {model!r}. Check the model name (and `base_url`)."

    async def aclose(self) -> None:
        for client in self._clients:
            await client.aclose()
