"""What a caller hands the engine (a Request) and gets back (a Pending at once, then an Outcome)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..functions.prompts import Message
from ..functions.tasks import Task
from ..providers.base import Completion, Provider, Usage
from .budget import Budget

# Why a row has no answer: the llm_errors.error_kind of a failed row.
ErrorKind = Literal[
    "retries_exhausted",
    "row_timeout",
    "invalid_answer",
    "bad_request",
    "input_too_long",
    "budget",  # not sent: max_cost_usd was reached (never written to llm_errors)
]


@dataclass(frozen=True)
class Request:
    """One row's text for a task. `rows_per_request` > 1 lets the engine send it in a pack with
    other rows of the same task (see packing.py); its answer and cache key are the same either way."""

    key: str
    task: Task
    text: str
    budget: Budget
    rows_per_request: int = 1

    # What one attempt sends and checks (attempt.py); a Pack answers the same questions for its rows.
    @property
    def model(self) -> str:
        return self.task.model

    @property
    def calibration_key(self) -> str:
        return self.task.spec_hash

    def messages(self) -> list[Message]:
        return self.task.messages(self.text)

    @property
    def max_tokens(self) -> int:
        return self.task.max_tokens

    @property
    def answer_tokens(self) -> int:
        return self.task.answer_tokens

    def response_format(self) -> dict[str, Any] | None:
        return self.task.response_format()

    @property
    def keeps_cut_answers(self) -> bool:
        return self.task.keeps_cut_answers

    def parse_answer(self, content: str | None) -> str:
        return self.task.parse_answer(content)

    @property
    def temperature(self) -> float:
        return self.task.temperature

    def estimate(self) -> tuple[int, int]:
        return self.task.estimate_tokens(self.text)

    async def send(self, provider: Provider, max_tokens: int) -> Completion:
        """One request to the provider: a chat completion, or for llm_embed the text's vector (as JSON)."""
        if self.task.embeds:
            result = await provider.embed(model=self.model, inputs=[self.text], dimensions=self.task.dimensions)
            return Completion(json.dumps(result.vectors[0]), "stop", result.usage, result.rate)
        return await chat(provider, self, max_tokens)


async def chat(provider: Provider, asked: Askable, max_tokens: int) -> Completion:
    """The chat completion a Request or a Pack asks for."""
    return await provider.complete(
        model=asked.model,
        messages=asked.messages(),
        response_format=asked.response_format(),
        max_tokens=max_tokens,
        temperature=asked.temperature,
    )


class Askable(Protocol):
    """What one attempt (attempt.py) sends and checks: a Request, or a Pack of them."""

    @property
    def key(self) -> str: ...
    @property
    def budget(self) -> Budget: ...
    @property
    def model(self) -> str: ...
    @property
    def calibration_key(self) -> str: ...
    @property
    def max_tokens(self) -> int: ...
    @property
    def answer_tokens(self) -> int: ...
    @property
    def temperature(self) -> float: ...
    def messages(self) -> list[Message]: ...
    def response_format(self) -> dict[str, Any] | None: ...
    @property
    def keeps_cut_answers(self) -> bool: ...
    def estimate(self) -> tuple[int, int]: ...
    async def send(self, provider: Provider, max_tokens: int) -> Completion: ...
    def parse_answer(self, content: str | None) -> str: ...


@dataclass
class Outcome:
    key: str
    result: str | None = None  # canonical JSON of a valid answer
    error_kind: ErrorKind | None = None  # set when no valid answer
    error: str | None = None
    attempts: int = 0  # requests sent for this row, alone or in a pack
    requests: int = 0  # requests the audit charges to this row: its own, or those of packs it led
    retry_requests: int = 0  # of which sent again after a failure
    rate_limited: int = 0  # of which answered 429
    truncated: int = 0  # answers cut at max_tokens: each retry doubles it
    usage: Usage = field(default_factory=Usage)
    cost_usd: float | None = 0.0
    shared: bool = False  # answered by a request another caller had in flight: cost counted there
    # Monotonic time row_timeout counts from: the row's first request, or its first wait for a
    # provider that is down (time queued behind the rate limit before either does not count).
    clock_from: float | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    def as_shared(self) -> Outcome:
        return Outcome(key=self.key, result=self.result, error_kind=self.error_kind, error=self.error, shared=True)


@dataclass(frozen=True)
class Pending:
    """A submitted request: `owned` is False when another caller's request for the key was in flight."""

    key: str
    future: asyncio.Future[Outcome]
    owned: bool
