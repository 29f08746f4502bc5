"""Anthropic's Messages API (`provider: anthropic`), over httpx: the request body (realtime, and the
`params` of a Message Batches request), the answer read back into a Completion, and the
`anthropic-ratelimit-*` headers read into RateHeaders."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any

import httpx

from .base import Completion, Embeddings, FatalProviderError, RowError, TransientError, Usage
from .http import error_message, not_a, not_connected, parse_retry_after, redact, shown_url
from .rate_headers import RateHeaders

API_VERSION = "2023-06-01"
MESSAGES_PATH = "/v1/messages"
# Anthropic caches a prefix from 1,024 tokens on (more for some models: a shorter marked prefix is simply
# not cached, at no cost); below it a cache_control breakpoint would buy nothing.
CACHE_MIN_TOKENS = 1024
CHARS_PER_TOKEN = 4.0  # as functions/tokens.py estimates (that layer is not importable from here)
# stop_reason -> the finish_reason the engine reads (outcome.answer_of): `length` is resent with more
# room, `refusal` is an invalid answer; a stop sequence or a pause is as good as an end of turn here.
STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "refusal",
    "pause_turn": "stop",
    "tool_use": "stop",
}
# Keywords of JSON Schema that Claude's structured outputs do not take; our schemas use none of them,
# but a user's `schema=` might.
_UNSUPPORTED_KEYWORDS = frozenset(
    {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minLength", "maxLength"}
    | {"maxItems", "minProperties", "maxProperties"}
)


def claude_schema(schema: Any) -> Any:
    """An answer schema in the subset Claude's structured outputs take: every object closed
    (`additionalProperties: false`), constraints it does not enforce left out (the answer is
    validated against the full schema on our side anyway)."""
    if isinstance(schema, list):
        return [claude_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: claude_schema(v) for k, v in schema.items() if k not in _UNSUPPORTED_KEYWORDS}
    if "properties" in schema:
        out["properties"] = {name: claude_schema(sub) for name, sub in schema["properties"].items()}
    kinds = schema.get("type")
    if kinds == "object" or (isinstance(kinds, list) and "object" in kinds):
        out["additionalProperties"] = False
    if isinstance(out.get("minItems"), int) and out["minItems"] > 1:
        out["minItems"] = 1  # only 0 and 1 are taken
    return out


def _system_blocks(system: str) -> list[dict[str, Any]]:
    """The fixed part of the prompt as one text block, a cache breakpoint on it when it is long
    enough to be cached: the rows after the first read it from Anthropic's cache at a tenth of the price."""
    block: dict[str, Any] = {"type": "text", "text": system}
    if math.ceil(len(system) / CHARS_PER_TOKEN) >= CACHE_MIN_TOKENS:
        block["cache_control"] = {"type": "ephemeral"}
    return [block]


def messages_body(
    model: str,
    messages: list[dict[str, str]],
    response_format: dict[str, Any] | None,
    max_tokens: int,
    temperature: float,
) -> dict[str, Any]:
    """The body of one Messages API request: posted in real time, and the `params` of a batch
    request. The leading system messages (the fixed part of every prompt) become the top-level
    `system`; the answer is constrained by `output_config.format` when the function asks for JSON."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] in ("system", "developer"))
    turns = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] in ("user", "assistant")]
    body: dict[str, Any] = {"model": model, "max_tokens": max(1, max_tokens), "messages": turns}
    if system:
        body["system"] = _system_blocks(system)
    body["temperature"] = min(max(temperature, 0.0), 1.0)  # config refuses above 1 with provider anthropic
    if response_format is not None:
        schema = (response_format.get("json_schema") or {}).get("schema")
        if isinstance(schema, dict):
            body["output_config"] = {"format": {"type": "json_schema", "schema": claude_schema(schema)}}
    return body


def usage_of(usage: Any) -> Usage:
    """A Message's `usage`: every prompt token, whether new, written to the cache or read from it."""
    usage = usage if isinstance(usage, dict) else {}
    fresh = int(usage.get("input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    read = int(usage.get("cache_read_input_tokens") or 0)
    return Usage(fresh + written + read, int(usage.get("output_tokens") or 0), read, written)


def completion_of(body: Any, rate: RateHeaders | None = None) -> Completion:
    """A Message: its text blocks joined, its stop_reason in the engine's words. Raises KeyError,
    TypeError or AttributeError when the body is not a Message."""
    if body.get("type") != "message":
        raise KeyError("type")
    blocks = body["content"]
    text = "".join(b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text")
    reason = STOP_REASONS.get(str(body.get("stop_reason")), body.get("stop_reason"))
    return Completion(
        content=None if reason == "refusal" else text,
        finish_reason=reason,
        usage=usage_of(body.get("usage")),
        rate=rate,
    )


def _seconds_until(value: str | None) -> float | None:
    """An RFC 3339 reset time as seconds from now; None when absent or unreadable."""
    if not value:
        return None
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - datetime.now(timezone.utc).timestamp())


def rate_of(headers: Mapping[str, str]) -> RateHeaders | None:
    """`anthropic-ratelimit-requests-*` and `-tokens-*` (else `-input-tokens-*`, the budget our
    prompts spend) into the limiter's RateHeaders; None when the response has none."""

    def num(name: str) -> float | None:
        try:
            value = headers.get(f"anthropic-ratelimit-{name}")
            return float(value) if value is not None else None
        except ValueError:
            return None

    tokens = "tokens" if num("tokens-limit") is not None else "input-tokens"
    parsed = RateHeaders(
        num("requests-limit"), num("requests-remaining"), num(f"{tokens}-limit"), num(f"{tokens}-remaining")
    )
    return parsed if any(v is not None for v in parsed.__dict__.values()) else None


def retry_after_of(headers: httpx.Headers, limited: bool) -> float | None:
    """`retry-after`, else for a 429 when the budget it spent resets (`-remaining: 0`; an RFC 3339 time)."""
    after = parse_retry_after(headers)
    if after is not None or not limited:
        return after
    resets = [
        _seconds_until(headers.get(f"anthropic-ratelimit-{name}-reset"))
        for name in ("requests", "tokens", "input-tokens", "output-tokens")
        if headers.get(f"anthropic-ratelimit-{name}-remaining") == "0"
    ]
    known = [reset for reset in resets if reset is not None]
    return min(known) if known else None


def request_headers(key: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The profile's `headers:`, then the key and the API version (config refuses its own of those)."""
    return {**extra, "x-api-key": key, "anthropic-version": API_VERSION}


def raise_for_status(response: httpx.Response, secrets: list[str], api_key_env: str, what: str) -> None:
    """429, 5xx and 529 (overloaded) are worth retrying; 401/403 stop the run; 404 names the URL; any
    other 4xx is this request's own."""
    status = response.status_code
    if status < 400:
        return
    said = f"HTTP {status}: {error_message(response, secrets)}"
    if status == 429 or status >= 500:
        kind = "rate_limited" if status == 429 else "server_error"
        raise TransientError(kind, said, retry_after_of(response.headers, status == 429), rate_of(response.headers))
    if status in (401, 403):
        raise FatalProviderError(
            f"Anthropic at {what} refused the API key ({said}). Check the key in the environment variable "
            f"{api_key_env} (named by `api_key_env`)."
        )
    if status == 404:
        raise FatalProviderError(
            f"{said} from {shown_url(str(response.request.url))}. Check `base_url` (the API root, e.g. "
            "https://api.anthropic.com, without /v1) and the model name."
        )
    raise RowError("bad_request", said)


class AnthropicProvider:
    name = "anthropic"

    def __init__(
        self,
        *,
        base_url: str,
        api_key: Callable[[], str],
        api_key_env: str,
        timeout: float,
        max_connections: int,
        transport: httpx.AsyncBaseTransport | None = None,
        headers: Callable[[], Mapping[str, str]] = dict,
    ) -> None:
        self._url = base_url.rstrip("/") + MESSAGES_PATH
        self._base = shown_url(base_url.rstrip("/"))
        self._api_key = api_key
        self._api_key_env = api_key_env
        self._headers = headers  # the profile's `headers:`, read per request like the key
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections),
            transport=transport,
        )

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        response_format: dict[str, Any] | None,
        max_tokens: int,
        temperature: float,
        top_logprobs: int | None = None,  # Claude gives no logprobs: never asked (with_confidence is refused)
    ) -> Completion:
        body = messages_body(model, messages, response_format, max_tokens, temperature)
        key = self._api_key()  # read per request: a fully cached run needs no key, a rotated one is picked up
        extra = self._headers()
        secrets = [key, *extra.values()]
        try:
            response = await self._client.post(self._url, json=body, headers=request_headers(key, extra))
        except httpx.TimeoutException as exc:
            raise TransientError("timeout", f"request timed out ({type(exc).__name__})") from None
        except httpx.ConnectError as exc:
            said = redact(f"cannot connect to base_url {self._base} ({not_connected(exc)})", secrets)
            raise TransientError("unreachable", said) from None
        except httpx.TransportError as exc:
            said = redact(f"connection to {self._base} failed ({type(exc).__name__}: {exc})", secrets)
            raise TransientError("connection", said) from None
        raise_for_status(response, secrets, self._api_key_env, self._url)
        try:
            return completion_of(response.json(), rate_of(response.headers))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise not_a(response, "Message", secrets) from None

    async def embed(self, *, model: str, inputs: list[str], dimensions: int | None) -> Embeddings:
        # Refused at compile time (calls/plan.py); reaching here is a bug, said in words.
        raise FatalProviderError("Anthropic serves no embeddings: llm_embed needs an OpenAI-compatible provider.")

    async def aclose(self) -> None:
        await self._client.aclose()
