"""One request for a row. It waits while the provider is down (outage.py), for a limiter slot
(limiter.py) and to reserve its estimated cost against the budget (budget.py); it is sent; then the
slot, the reservation and the probe are given back in one place, the real cost charged. Retrying
is retries.py's job."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import ConfigError
from ..pricing import PriceTable
from ..providers.base import Completion, FatalProviderError, Provider, RowError, TransientError, Usage
from .budget import Budget
from .limiter import Limiter
from .outage import Outage, Streak
from .outcome import Answer, Askable, Halt, Outcome, answer_of
from .stop import Stop


class BudgetReached(Exception):
    """The request's estimated cost does not fit the budget even once everything in flight settles."""


@dataclass
class Row:
    """One row's request, its outcome so far, and per failed attempt the streak of provider failures
    it was part of (None for a 429 or an invalid answer)."""

    request: Askable
    outcome: Outcome
    row_timeout: float
    failures: list[Streak | None] = field(default_factory=list)

    def counted(self) -> int:
        """Failures held against max_attempts: not those of a streak that turned out to be an outage."""
        return sum(s is None or not s.outage for s in self.failures)

    def time_left(self) -> float:
        if self.outcome.clock_from is None:
            return self.row_timeout
        return self.row_timeout - (time.monotonic() - self.outcome.clock_from)


@dataclass
class _Held:
    """What one attempt holds: a limiter slot for its tokens, a budget reservation, the probe."""

    limiter: Limiter
    tokens: float
    seq: int | None = None  # the limiter's send number while a slot is held
    reserved: float | None = None  # the budget reservation once made
    probe: bool = False
    sent_at: float | None = None  # monotonic time the request went out

    def release_slot(self, completion: Completion | None, error: BaseException | None) -> None:
        """The one place a slot is given back: unsent, with its tokens; sent, with what the limiter
        learns from the answer or the error."""
        seq, self.seq = self.seq, None
        if seq is None:
            return
        if self.sent_at is None:
            self.limiter.cancel(self.tokens)
        elif completion is not None:
            self.limiter.release(seq, ok=True, headers=completion.rate, latency=time.monotonic() - self.sent_at)
        elif isinstance(error, TransientError):
            rate_limited = error.kind == "rate_limited"
            self.limiter.release(
                seq, ok=False, rate_limited=rate_limited, retry_after=error.retry_after, headers=error.rate
            )
        else:
            self.limiter.release(seq, ok=False)


@dataclass
class _Calibration:
    """Billed tokens / our estimate, learned per task from `usage` (a provider's tokenizer and
    template, the answers' real length): it corrects the reservations, not the dry run."""

    prompt: float = 1.0
    completion: float = 1.0

    def learn(self, estimate: tuple[float, float], usage: Usage) -> None:
        if usage.prompt_tokens and estimate[0]:
            self.prompt = 0.9 * self.prompt + 0.1 * usage.prompt_tokens / estimate[0]
        if usage.completion_tokens and estimate[1]:
            self.completion = 0.9 * self.completion + 0.1 * usage.completion_tokens / estimate[1]


class Attempts:
    """Makes one attempt of a row at a time; shared by every row, used on the engine's loop only."""

    def __init__(
        self,
        provider: Callable[[], Provider],
        limiter: Callable[[str], Limiter],
        outage: Outage,
        prices: PriceTable,
        request_timeout: float,
        stop: Stop,
    ) -> None:
        self.stop = stop
        self._provider = provider
        self._limiter = limiter
        self._outage = outage
        self._prices = prices
        self._request_timeout = request_timeout
        self._calibration: dict[str, _Calibration] = {}  # per task spec_hash
        self._budget_settled = asyncio.Event()  # replaced each time a reservation settles
        self._halted: dict[str, Halt] = {}  # per model, what refused the run in this invocation

    def new_invocation(self) -> None:
        """A key set or a base_url fixed since: try again."""
        self._halted.clear()

    async def attempt(self, row: Row) -> Answer:
        """One request for the row, once the provider is up (or this is the probe), a slot is free
        and the budget allows it; returns the checked answer (outcome.answer_of) or raises why there is
        none. Once the provider refused the run (a bad key, a wrong route, no key set) the model's
        rows raise Halt without a request: the requests in flight then are the only ones paid for."""
        model = row.request.model
        self._unless_halted(model)
        try:
            return await self._attempt(row)
        except (FatalProviderError, ConfigError) as exc:
            halt = Halt("config_error" if isinstance(exc, ConfigError) else "provider_error", str(exc))
            self._halted[model] = halt
            raise Halt(halt.kind, str(halt)) from None

    def _unless_halted(self, model: str) -> None:
        halted = self._halted.get(model)
        if halted is not None:
            raise Halt(halted.kind, str(halted))

    async def _attempt(self, row: Row) -> Answer:
        request, outcome = row.request, row.outcome
        price = self._prices.price(request.model)
        if price is None and request.budget.capped:
            raise ConfigError(
                f"dbt_llm: no price is known for model {request.model!r}, so `max_cost_usd` cannot be enforced. "
                f"Add it to the plugin config: prices: {{{request.model}: "
                "{input: <USD per 1M>, output: <USD per 1M>}}."
            )
        max_tokens = request.max_tokens * 2**outcome.truncated
        estimate = request.estimate()  # the same estimate as the dry run's
        calibration = self._calibration.setdefault(request.calibration_key, _Calibration())
        prompt, answer = estimate[0] * calibration.prompt, estimate[1] * calibration.completion
        # Providers count max_tokens against the token budget until the answer is in, so we do too.
        held = _Held(self._limiter(request.model), tokens=prompt + max_tokens)
        completion: Completion | None = None
        error: BaseException | None = None
        cost = 0.0
        try:
            await self._admit(row, held)
            self._unless_halted(request.model)  # the run may have been refused while this one queued
            # Reserved once a slot is free, so what is in flight cannot carry the spend past the cap.
            reserve = 0.0 if price is None else price.cost(math.ceil(prompt), math.ceil(answer))
            await self._reserve(request.budget, reserve)
            held.reserved = reserve
            self.stop.check()  # nothing is sent once the run is cancelled
            completion = await self._send(row, max_tokens, held)
            cost = outcome.charge(completion.usage, price)
        except BaseException as exc:
            error = exc
            raise
        finally:
            held.release_slot(completion, error)
            if held.reserved is not None:
                self._settle(request.budget, held.reserved, cost)
            if held.probe:
                self._outage.probe_done()
        calibration.learn(estimate, completion.usage)
        return answer_of(request, completion, outcome, max_tokens)

    async def _admit(self, row: Row, held: _Held) -> None:
        """Wait while the provider is down (unless this is the probe), then for a limiter slot."""
        outcome = row.outcome
        while True:
            if self._outage.down and outcome.clock_from is None:
                outcome.clock_from = time.monotonic()  # waiting for the provider counts toward row_timeout
            held.probe = await self.stop.until(self._outage.wait(time.monotonic() + row.time_left()))
            held.seq = await self.stop.until(held.limiter.acquire(held.tokens))
            if held.probe or not self._outage.down:
                return
            held.release_slot(None, None)  # it went down while this one queued: wait, do not send

    async def _reserve(self, budget: Budget, cost_usd: float) -> None:
        """Reserve the request's estimated cost; wait while it fits only if requests in flight cost
        less than they reserved; raise BudgetReached when it cannot fit."""
        while True:
            settled = self._budget_settled
            verdict = budget.reserve(cost_usd)
            if verdict == "reserved":
                return
            if verdict == "over":
                raise BudgetReached()
            await self.stop.until(settled.wait())

    def _settle(self, budget: Budget, reserved: float, cost: float) -> None:
        budget.settle(reserved, cost)
        settled, self._budget_settled = self._budget_settled, asyncio.Event()
        settled.set()

    async def _send(self, row: Row, max_tokens: int, held: _Held) -> Completion:
        """Send the request and tell the outage gate what the provider did. Counts every request sent."""
        request, outcome = row.request, row.outcome
        held.sent_at = time.monotonic()
        outcome.attempts += 1
        outcome.requests += 1
        outcome.retry_requests += outcome.attempts > 1
        if outcome.clock_from is None:
            outcome.clock_from = held.sent_at
        try:
            provider = self._provider()
            timeout = max(0.1, min(held.limiter.timeout(self._request_timeout), row.time_left()))
            try:
                # Once the run is cancelled, an answer on its way gets a grace period to land.
                completion = await self.stop.until(
                    asyncio.wait_for(request.send(provider, max_tokens), timeout), grace=True
                )
            except asyncio.TimeoutError:
                raise TransientError("timeout", f"no answer within {timeout:.1f}s") from None
        except TransientError as exc:
            if exc.kind == "rate_limited":
                outcome.rate_limited += 1
            row.failures.append(self._outage.failed(request.key, exc, probe=held.probe))
            raise
        except (RowError, FatalProviderError):
            self._outage.answered()
            raise
        self._outage.answered()
        return completion
