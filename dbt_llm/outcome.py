"""What a caller hands the engine (a Request) and gets back (a Pending at once, then an Outcome)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from .budget import Budget
from .providers.base import Usage
from .rows import ErrorKind
from .tasks import Task


@dataclass(frozen=True)
class Request:
    key: str
    task: Task
    text: str
    budget: Budget


@dataclass
class Outcome:
    key: str
    result: str | None = None  # canonical JSON of a valid answer
    error_kind: ErrorKind | None = None  # set when no valid answer
    error: str | None = None
    attempts: int = 0  # requests sent for this row
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
