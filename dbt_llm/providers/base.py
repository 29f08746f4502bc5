"""What every provider returns, and the errors that tell the engine whether to retry."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, Protocol

from .rate_headers import RateHeaders


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_tokens: int = 0  # of prompt_tokens, served from the provider's prefix cache
    cache_write_tokens: int = 0  # of prompt_tokens, written to the provider's cache (Anthropic bills them apart)

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.completion_tokens + other.completion_tokens,
            self.cached_tokens + other.cached_tokens,
            self.cache_write_tokens + other.cache_write_tokens,
        )


class TokenLogprob(NamedTuple):
    """One token of an answer as `choices[0].logprobs.content[]` gives it: its bytes, its logprob,
    and the alternatives shown (`top_logprobs`) as (bytes, logprob)."""

    text: bytes
    logprob: float
    top: tuple[tuple[bytes, float], ...]


@dataclass(frozen=True)
class Completion:
    content: str | None
    finish_reason: str | None
    usage: Usage
    rate: RateHeaders | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None  # None: not asked for, or not given


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]  # one per input, in input order
    usage: Usage
    rate: RateHeaders | None = None


class TransientError(Exception):
    """Worth retrying: 429, 5xx, a timeout or a dropped connection."""

    def __init__(
        self, kind: str, message: str, retry_after: float | None = None, rate: RateHeaders | None = None
    ) -> None:
        super().__init__(message)
        self.kind = kind
        self.retry_after = retry_after
        self.rate = rate


# The error_kinds of rows.ErrorKind a provider may give one request it refuses.
RowErrorKind = Literal["bad_request", "input_too_long"]


class RowError(Exception):
    """The provider refused this one request (for example a 400 for a too-long input)."""

    def __init__(self, kind: RowErrorKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind


class FatalProviderError(Exception):
    """No request can succeed (bad key, unknown model): stop the run."""


class Provider(Protocol):
    name: str

    async def complete(
        self,
        *,
        model: str,
        messages: list[dict[str, str]],
        response_format: dict[str, Any] | None,  # None: free text
        max_tokens: int,
        temperature: float,
        top_logprobs: int | None = None,  # ask for token logprobs with this many alternatives
    ) -> Completion: ...

    async def embed(self, *, model: str, inputs: list[str], dimensions: int | None) -> Embeddings: ...

    async def aclose(self) -> None: ...
