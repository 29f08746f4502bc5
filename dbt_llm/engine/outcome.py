"""What a caller hands the engine (a Request) and gets back (a Pending at once, then an Outcome)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from ..errors import ConfigError, DbtLlmError, ProviderError
from ..functions.prompts import Message
from ..functions.tasks import InvalidAnswer, Task
from ..pricing import Price
from ..providers.base import Completion, Provider, TokenLogprob, Usage
from .budget import Budget

# Why a row has no answer: the llm_errors.error_kind of a failed row.
ErrorKind = Literal[
    "retries_exhausted",
    "row_timeout",
    "invalid_answer",
    "bad_request",
    "input_too_long",
    "budget",  # not sent: max_cost_usd was reached (never written to llm_errors)
    # These stop the model: no row of it can be answered.
    "config_error",  # the plugin config cannot send it: no API key set, no price to enforce max_cost_usd
    "provider_error",  # the provider refused the run: a bad key, a wrong route
    "unreachable",  # nothing answered at base_url since the invocation started
    "cancelled",  # the run was cancelled (Ctrl-C, SIGTERM) before an answer: not a row failure, not written
]
STOPPING: frozenset[ErrorKind] = frozenset({"config_error", "provider_error", "unreachable"})


class Halt(Exception):
    """No request of the run can succeed: every row still waiting fails with this, at once."""

    def __init__(self, kind: ErrorKind, message: str) -> None:
        super().__init__(message.removeprefix("dbt_llm: "))
        self.kind: ErrorKind = kind


@dataclass(frozen=True)
class Answer:
    """A checked answer: its canonical JSON, how many invented values grounding set to NULL in it, and
    the probability the model gave it among the allowed answers (None: unknown). A pack's envelope
    keeps the completion's logprobs, for each row's confidence."""

    result: str
    ungrounded: int = 0
    confidence: float | None = None
    logprobs: tuple[TokenLogprob, ...] | None = None


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

    def parse_answer(self, content: str | None, logprobs: tuple[TokenLogprob, ...] | None = None) -> Answer:
        """Validated, then grounded against this row's own text: every path to an answer passes here."""
        result, ungrounded = self.task.ground(self.task.parse_answer(content), self.text)
        return Answer(result, ungrounded, self.task.confidence(content, result, logprobs))

    @property
    def temperature(self) -> float:
        return self.task.temperature

    @property
    def top_logprobs(self) -> int | None:
        return self.task.top_logprobs

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
        top_logprobs=asked.top_logprobs,
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
    @property
    def top_logprobs(self) -> int | None: ...
    def messages(self) -> list[Message]: ...
    def response_format(self) -> dict[str, Any] | None: ...
    @property
    def keeps_cut_answers(self) -> bool: ...
    def estimate(self) -> tuple[int, int]: ...
    async def send(self, provider: Provider, max_tokens: int) -> Completion: ...
    def parse_answer(self, content: str | None, logprobs: tuple[TokenLogprob, ...] | None = None) -> Answer: ...


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
    ungrounded: int = 0  # values of the answer set to NULL: the text does not contain them (grounding.py)
    confidence: float | None = None  # of the answer, from the token logprobs (functions/confidence.py)
    shared: bool = False  # answered by a request another caller had in flight: cost counted there
    # Monotonic time row_timeout counts from: the row's first request, or its first wait for a
    # provider that is down (time queued behind the rate limit before either does not count).
    clock_from: float | None = None

    @property
    def ok(self) -> bool:
        return self.result is not None

    @property
    def stops(self) -> bool:
        """No answer because nothing can be answered: the caller fails the model with this error."""
        return self.error_kind in STOPPING

    def stop_error(self, where: str = "") -> DbtLlmError:
        """The error a stopping outcome fails its model with."""
        cls = ConfigError if self.error_kind == "config_error" else ProviderError
        return cls(f"dbt_llm: {where}{self.error}")

    def as_shared(self) -> Outcome:
        """The answer as another caller gets it: already grounded; its cost and counts stay with the owner."""
        return Outcome(
            key=self.key,
            result=self.result,
            error_kind=self.error_kind,
            error=self.error,
            confidence=self.confidence,
            shared=True,
        )

    def charge(self, usage: Usage, price: Price | None) -> float:
        """Add what one answer billed (`price`: the list or the batch one); returns its cost."""
        self.usage = self.usage + usage
        if price is None:
            self.cost_usd = None
            return 0.0
        cost = price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens, usage.cache_write_tokens)
        if self.cost_usd is not None:
            self.cost_usd += cost
        return cost

    def took(self, answer: Answer) -> None:
        self.result, self.ungrounded, self.confidence = answer.result, answer.ungrounded, answer.confidence


def answer_of(asked: Askable, completion: Completion, outcome: Outcome, max_tokens: int) -> Answer:
    """The one check of a completion, realtime or batch, a row or a pack: a cut answer is invalid (and
    counted in `outcome.truncated`, so it is sent again with more room) unless the function keeps cut
    answers; a refusal is invalid; else the content is parsed, validated and grounded."""
    if completion.finish_reason == "length" and not asked.keeps_cut_answers:
        outcome.truncated += 1
        raise InvalidAnswer(f"the answer was cut at max_tokens={max_tokens}")
    if completion.finish_reason == "refusal":
        raise InvalidAnswer("the model refused to answer")
    return asked.parse_answer(completion.content, completion.logprobs)


@dataclass(frozen=True)
class Pending:
    """A submitted request: `owned` is False when another caller's request for the key was in flight."""

    key: str
    future: asyncio.Future[Outcome]
    owned: bool
