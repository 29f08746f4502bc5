"""The engine: takes requests, returns validated answers with their usage and cost.

It knows nothing of dbt or DuckDB. Requests from every thread share one event loop,
one concurrency limit and one in-flight table, so a text asked for twice at the same
time is sent once. Before it is sent, a request waits while the provider is down (outage.py),
for a limiter slot (limiter.py), and reserves its estimated cost against the budget (budget.py).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import random
import threading
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from . import tokens
from .budget import Budget
from .errors import ConfigError, DbtLlmError, ProviderError
from .limiter import Limiter
from .outage import Outage, Streak
from .pricing import Price, PriceTable
from .providers.base import Completion, FatalProviderError, Provider, RowError, TransientError, Usage
from .tasks import InvalidAnswer, Task

log = logging.getLogger("dbt_llm")
T = TypeVar("T")


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
    error_kind: str | None = None  # set when no valid answer: retries_exhausted, invalid_answer, bad_request, budget
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


class _BudgetReached(Exception):
    pass


def _backoff(error: Exception, counted: int) -> float:
    """Seconds before a row's next attempt; `counted` is its failures held against max_attempts."""
    if isinstance(error, TransientError) and error.retry_after is not None:
        return min(float(error.retry_after), 120.0)
    if isinstance(error, InvalidAnswer):
        return 0.0
    backoff: float = min(20.0, 0.25 * 2.0 ** (counted - 1))
    return backoff * random.uniform(0.5, 1.0)


@dataclass(frozen=True)
class _Queued:
    request: Request
    on_outcome: Callable[[Outcome], None]
    future: asyncio.Future[Outcome]


@dataclass
class _Row:
    """One row's request, its outcome so far, and per failed attempt the streak of provider failures
    it was part of (None for a 429 or an invalid answer)."""

    request: Request
    outcome: Outcome
    failures: list[Streak | None] = field(default_factory=list)

    def counted(self) -> int:
        """Failures held against max_attempts: not those of a streak that turned out to be an outage."""
        return sum(s is None or not s.outage for s in self.failures)


@dataclass
class _Slot:
    """What one attempt holds: a limiter slot and its tokens, a budget reservation, the probe."""

    tokens: float
    seq: int = 0
    reserved: float = 0.0
    probe: bool = False


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


class Engine:
    def __init__(
        self,
        provider_factory: Callable[[], Provider],
        *,
        prices: PriceTable,
        max_concurrency: int,
        max_attempts: int,
        request_timeout: float = 60.0,
        row_timeout: float = 600.0,
        requests_per_minute: float | None = None,
        tokens_per_minute: float | None = None,
        outage: Outage | None = None,
    ) -> None:
        self._provider_factory = provider_factory
        self._provider: Provider | None = None
        self._prices = prices
        self._max_concurrency = max_concurrency
        self._max_attempts = max_attempts
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._request_timeout = request_timeout
        self._row_timeout = row_timeout
        self._ceilings = (requests_per_minute, tokens_per_minute)
        self._limiters: dict[str, Limiter] = {}
        self.outage = outage or Outage()  # one provider: when it is down, every model waits for it
        self._calibration: dict[str, _Calibration] = {}  # per task spec_hash
        self._budget_settled = asyncio.Event()  # replaced each time a reservation settles
        # Prefetch: per owner, requests not started yet (in submit order); who queued each key; callers
        # waiting per owner; started and unfinished requests per model. All touched on the loop only.
        self._prefetch: dict[str, dict[str, _Queued]] = {}
        self._prefetch_owner: dict[str, str] = {}
        self._demand: dict[str, int] = {}
        self._started: dict[str, int] = {}

    # -- the event loop, on its own thread so any caller thread can block on it --
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=loop.run_forever, name="dbt-llm-engine", daemon=True)
                self._thread.start()
                self._loop = loop
            return self._loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._ensure_loop()).result()

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is None:
            return
        if self._provider is not None:
            asyncio.run_coroutine_threadsafe(self._provider.aclose(), loop).result(timeout=10)
            self._provider = None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- public API --
    def run(self, requests: list[Request], on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
        """Answer each request (keys must be distinct); `on_outcome` gets each new outcome
        as soon as it is known, on the engine's thread. Blocks until all are done."""
        return self.wait(self.submit(requests, on_outcome))

    def submit(
        self, requests: list[Request], on_outcome: Callable[[Outcome], None], *, prefetch_for: str | None = None
    ) -> list[Pending]:
        """Hand the requests over and return at once; `wait` collects the outcomes. A key already
        in flight (from any caller) is not sent again.

        Without `prefetch_for` the requests start now. With it, they are a prefetch for that owner:
        one starts only while a caller waits in `wait(..., owner)` and a slot of the model is free,
        in the order submitted; the keys a caller waits for start first. A query that stops early
        (a LIMIT) then pays for about one round of slots more than it used, not for every row."""
        if not requests:
            return []
        return self._call(self._start(requests, on_outcome, prefetch_for))

    def wait(self, pending: list[Pending], owner: str | None = None) -> list[Outcome]:
        """Block until every pending request is settled, meanwhile letting `owner`'s prefetch use
        free slots. An outcome answered by a request another caller had in flight comes back
        marked `shared` (its cost is counted there)."""
        if not pending:
            return []
        results = self._call(self._wait(pending, owner))
        return [outcome if p.owned else outcome.as_shared() for outcome, p in zip(results, pending, strict=True)]

    async def _start(
        self, requests: list[Request], on_outcome: Callable[[Outcome], None], prefetch_for: str | None
    ) -> list[Pending]:
        loop = asyncio.get_running_loop()
        pending: list[Pending] = []
        for request in requests:
            existing = self._inflight.get(request.key)
            if existing is not None:
                pending.append(Pending(request.key, existing, owned=False))
                continue
            future: asyncio.Future[Outcome] = loop.create_future()
            self._inflight[request.key] = future
            future.add_done_callback(functools.partial(self._forget, request.key))
            pending.append(Pending(request.key, future, owned=True))
            item = _Queued(request, on_outcome, future)
            if prefetch_for is None:
                self._launch(item)
            else:
                self._prefetch.setdefault(prefetch_for, {})[request.key] = item
                self._prefetch_owner[request.key] = prefetch_for
        self._feed()
        return pending

    async def _wait(self, pending: list[Pending], owner: str | None) -> list[Outcome]:
        for p in pending:  # wanted now: out of any prefetch queue, ahead of the rest
            queued_by = self._prefetch_owner.pop(p.key, None)
            if queued_by is not None:
                self._launch(self._prefetch[queued_by].pop(p.key))
        if owner is not None:
            self._demand[owner] = self._demand.get(owner, 0) + 1
            self._feed()
        try:
            return list(await asyncio.gather(*(p.future for p in pending)))
        finally:
            if owner is not None:
                self._demand[owner] -= 1

    def _launch(self, item: _Queued) -> None:
        model = item.request.task.model
        self._started[model] = self._started.get(model, 0) + 1

        def settle(task: asyncio.Task[Outcome]) -> None:
            self._started[model] -= 1
            if not item.future.done():
                if task.cancelled():
                    item.future.cancel()
                elif task.exception() is not None:
                    item.future.set_exception(task.exception())  # type: ignore[arg-type]
                else:
                    item.future.set_result(task.result())
            self._feed()

        asyncio.ensure_future(self._answer(item.request, item.on_outcome)).add_done_callback(settle)

    def _feed(self) -> None:
        """Start prefetched requests of owners someone is waiting for, while their model has a free slot."""
        for owner, waiting in self._demand.items():
            queue = self._prefetch.get(owner)
            while waiting > 0 and queue:
                key, item = next(iter(queue.items()))
                model = item.request.task.model
                if self._started.get(model, 0) >= int(self.limiter(model).limit):
                    break
                del queue[key]
                del self._prefetch_owner[key]
                self._launch(item)

    def _forget(self, key: str, done: asyncio.Future[Outcome]) -> None:
        self._inflight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here: a caller that never waits must not log "never retrieved"

    async def _answer(self, request: Request, on_outcome: Callable[[Outcome], None]) -> Outcome:
        row = _Row(request, Outcome(key=request.key))
        outcome = row.outcome
        try:
            while True:
                try:
                    outcome.result = await self._attempt(row)
                    break
                except (TransientError, InvalidAnswer) as exc:
                    if isinstance(exc, InvalidAnswer):
                        row.failures.append(None)
                    left = self._row_time_left(outcome)
                    if row.counted() >= self._max_attempts or left <= 0:
                        raise
                    if row.failures and row.failures[-1] is not None and row.failures[-1].outage:
                        continue  # the outage gate paces the next try
                    await asyncio.sleep(min(_backoff(exc, row.counted()), left))
        except _BudgetReached:
            outcome.error_kind = "budget"
            outcome.error = "not sent: max_cost_usd was reached"
        except TransientError as exc:
            if self._row_time_left(outcome) <= 0:
                outcome.error_kind = "row_timeout"
                outcome.error = f"no valid answer within row_timeout={self._row_timeout:g}s; last: {exc.kind}: {exc}"
            else:
                outcome.error_kind, outcome.error = "retries_exhausted", f"{exc.kind}: {exc}"
        except InvalidAnswer as exc:
            outcome.error_kind, outcome.error = "invalid_answer", str(exc)
        except RowError as exc:
            outcome.error_kind, outcome.error = exc.kind, str(exc)
        except FatalProviderError as exc:
            raise ProviderError(f"dbt_llm: {exc}") from None
        on_outcome(outcome)
        return outcome

    def _row_time_left(self, outcome: Outcome) -> float:
        if outcome.clock_from is None:
            return self._row_timeout
        return self._row_timeout - (time.monotonic() - outcome.clock_from)

    def limiter(self, model: str) -> Limiter:
        """One limiter per model: every dbt thread and model of the process shares it."""
        if model not in self._limiters:
            rpm, tpm = self._ceilings
            self._limiters[model] = Limiter(self._max_concurrency, requests_per_minute=rpm, tokens_per_minute=tpm)
        return self._limiters[model]

    async def _attempt(self, row: _Row) -> str:
        """One request for the row, once the provider is up (or this is the probe), a slot is free
        and the budget allows it."""
        request, outcome = row.request, row.outcome
        task = request.task
        price = self._prices.price(task.model)
        if price is None and request.budget.capped:
            raise ConfigError(
                f"dbt_llm: no price is known for model {task.model!r}, so `max_cost_usd` cannot be enforced. "
                f"Add it to the plugin config: prices: {{{task.model}: {{input: <USD per 1M>, output: <USD per 1M>}}}}."
            )
        messages = task.messages(request.text)
        max_tokens = task.max_tokens * 2**outcome.truncated
        estimate = (tokens.prompt_tokens(messages), task.answer_tokens)  # as Task.estimate_tokens
        calibration = self._calibration.setdefault(task.spec_hash, _Calibration())
        prompt, answer = estimate[0] * calibration.prompt, estimate[1] * calibration.completion
        # Providers count max_tokens against the token budget until the answer is in, so we do too.
        slot = _Slot(tokens=prompt + max_tokens)
        try:
            await self._admit(outcome, task.model, slot)
            if price is not None:
                slot.reserved = price.cost(math.ceil(prompt), math.ceil(answer))
            try:
                # Reserved once a slot is free, so what is in flight cannot carry the spend past the cap.
                await self._reserve(request.budget, slot.reserved)
            except BaseException:
                self.limiter(task.model).cancel(slot.tokens)
                raise
            completion = await self._send(row, messages, max_tokens, slot, price)
        finally:
            if slot.probe:
                self.outage.probe_done()
        calibration.learn(estimate, completion.usage)
        if completion.finish_reason == "length":
            outcome.truncated += 1
            raise InvalidAnswer(f"the answer was cut at max_tokens={max_tokens}")
        if completion.finish_reason == "refusal":
            raise InvalidAnswer("the model refused to answer")
        return task.parse_answer(completion.content)

    async def _admit(self, outcome: Outcome, model: str, slot: _Slot) -> None:
        """Wait while the provider is down (unless this is the probe), then for a limiter slot."""
        limiter = self.limiter(model)
        while True:
            if self.outage.down and outcome.clock_from is None:
                outcome.clock_from = time.monotonic()  # waiting for the provider counts toward row_timeout
            slot.probe = await self.outage.wait(self._deadline(outcome))
            slot.seq = await limiter.acquire(slot.tokens)
            if slot.probe or not self.outage.down:
                return
            limiter.cancel(slot.tokens)  # it went down while this one queued: wait, do not send

    def _deadline(self, outcome: Outcome) -> float:
        return time.monotonic() + self._row_time_left(outcome)

    async def _reserve(self, budget: Budget, cost_usd: float) -> None:
        """Reserve the request's estimated cost; wait while it fits only if requests in flight cost
        less than they reserved; raise _BudgetReached when it cannot fit."""
        while True:
            settled = self._budget_settled
            verdict = budget.reserve(cost_usd)
            if verdict == "reserved":
                return
            if verdict == "over":
                raise _BudgetReached()
            await settled.wait()

    def _settle(self, budget: Budget, reserved: float, cost: float) -> None:
        budget.settle(reserved, cost)
        settled, self._budget_settled = self._budget_settled, asyncio.Event()
        settled.set()

    async def _send(
        self, row: _Row, messages: list[dict[str, str]], max_tokens: int, slot: _Slot, price: Price | None
    ) -> Completion:
        """Send one request holding a limiter slot and a budget reservation; release both, charge
        the real cost, and tell the outage gate what the provider did. Counts every request sent."""
        request, outcome = row.request, row.outcome
        task, limiter = request.task, self.limiter(request.task.model)
        started = time.monotonic()
        outcome.attempts += 1
        if outcome.clock_from is None:
            outcome.clock_from = started
        cost = 0.0
        try:
            if self._provider is None:
                self._provider = self._provider_factory()
            timeout = max(0.1, min(limiter.timeout(self._request_timeout), self._row_time_left(outcome)))
            try:
                completion = await asyncio.wait_for(
                    self._provider.complete(
                        model=task.model,
                        messages=messages,
                        response_format=task.response_format(),
                        max_tokens=max_tokens,
                        temperature=task.temperature,
                    ),
                    timeout,
                )
            except asyncio.TimeoutError:
                raise TransientError("timeout", f"no answer within {timeout:.1f}s") from None
        except TransientError as exc:
            if exc.kind == "rate_limited":
                outcome.rate_limited += 1
            row.failures.append(self.outage.failed(request.key, exc, probe=slot.probe))
            limiter.release(
                slot.seq,
                ok=False,
                rate_limited=exc.kind == "rate_limited",
                retry_after=exc.retry_after,
                headers=exc.rate,
            )
            raise
        except BaseException as exc:
            if isinstance(exc, RowError | FatalProviderError):
                self.outage.answered()
            limiter.release(slot.seq, ok=False)
            raise
        else:
            self.outage.answered()
            limiter.release(slot.seq, ok=True, headers=completion.rate, latency=time.monotonic() - started)
            outcome.usage = outcome.usage + completion.usage
            if price is None:
                outcome.cost_usd = None
            else:
                cost = price.cost(completion.usage.prompt_tokens, completion.usage.completion_tokens)
                outcome.cost_usd = (outcome.cost_usd or 0.0) + cost
            return completion
        finally:
            self._settle(request.budget, slot.reserved, cost)


__all__ = ["Budget", "DbtLlmError", "Engine", "Outcome", "Pending", "Request"]
