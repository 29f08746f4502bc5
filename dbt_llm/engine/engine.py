"""The engine: takes requests, returns validated answers with their usage and cost.

It knows nothing of dbt or DuckDB. Requests from every thread share one event loop, one limiter
per model and one in-flight table, so a text asked for twice at the same time is sent once. When
each request starts is prefetch.py's job, a row's retries retries.py's, and one request's wait for
the provider, a limiter slot and the budget attempt.py's.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import DbtLlmError
from ..pricing import PriceTable
from ..providers.base import Provider
from .attempt import Attempts
from .budget import Budget
from .limiter import Limiter
from .outage import Outage
from .outcome import Outcome, Pending, Request
from .pack_retries import PackRetries
from .packing import packs_of
from .prefetch import Prefetch, Queued
from .retries import Retries, cancelled
from .stop import Stop

T = TypeVar("T")


@dataclass(frozen=True)
class EngineSettings:
    """How hard the engine may push one provider: per model `max_concurrency` requests at once (and the
    per-minute ceilings), `max_attempts` per row within `row_timeout`, each request `request_timeout`;
    `pack_chars` is the most text characters one packed request carries."""

    max_concurrency: int
    max_attempts: int
    request_timeout: float = 60.0
    row_timeout: float = 600.0
    requests_per_minute: float | None = None
    tokens_per_minute: float | None = None
    pack_chars: int = 20_000


class Engine:
    def __init__(
        self,
        provider_factory: Callable[[], Provider],
        *,
        prices: PriceTable,
        settings: EngineSettings,
        outage: Outage | None = None,
    ) -> None:
        self._provider_factory = provider_factory
        self._provider: Provider | None = None
        self._settings = settings
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._limiters: dict[str, Limiter] = {}
        self.outage = outage or Outage()  # one provider: when it is down, every model waits for it
        self._stop = Stop()
        self._attempts = attempts = Attempts(
            self._get_provider, self.limiter, self.outage, prices, settings.request_timeout, self._stop
        )
        tries, row_timeout = settings.max_attempts, settings.row_timeout
        self._retries = Retries(attempts, max_attempts=tries, row_timeout=row_timeout)
        self._packs = PackRetries(attempts, self._retries, max_attempts=tries, row_timeout=row_timeout)
        # On the loop only: the future of each key in flight, and when each request starts.
        self._inflight: dict[str, asyncio.Future[Outcome]] = {}
        self._prefetch = Prefetch(self._answer, lambda model: int(self.limiter(model).limit), settings.pack_chars)

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
            try:
                asyncio.run_coroutine_threadsafe(self._provider.aclose(), loop).result(timeout=10)
            except TimeoutError:
                pass  # a connection that will not close must not hold up the exit
            self._provider = None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(timeout=10)

    # -- public API --
    def run(self, requests: list[Request], on_outcome: Callable[[Outcome], None]) -> list[Outcome]:
        """Answer each request (keys must be distinct); `on_outcome` gets each new outcome
        as soon as it is known, on the engine's thread. Blocks until all are done; raises
        the error of one that says nothing can be answered (Outcome.stops)."""
        outcomes = self.wait(self.submit(requests, on_outcome))
        stopped = next((o for o in outcomes if o.stops), None)
        if stopped is not None:
            raise stopped.stop_error()
        return outcomes

    def submit(
        self,
        requests: list[Request],
        on_outcome: Callable[[Outcome], None],
        *,
        prefetch_for: str | None = None,
        still_needed: Callable[[str], bool] | None = None,
    ) -> list[Pending]:
        """Hand the requests over and return at once; `wait` collects the outcomes. A key already
        in flight (from any caller) is not sent again, nor one `still_needed` says was answered
        meanwhile (it is asked on the loop, after the outcomes delivered so far: a caller that checked
        before another caller's request for the key landed does not pay for it again).

        Without `prefetch_for` the requests start now. With it, they are a prefetch for that owner:
        one starts only while a caller waits in `wait(..., owner)` and a slot of the model is free,
        in the order submitted; the keys a caller waits for start first. A query that stops early
        (a LIMIT) then pays for about one round of slots more than it used, not for every row."""
        if not requests:
            return []
        if still_needed is not None:
            return self._call(self._start_needed(requests, on_outcome, prefetch_for, still_needed))
        return self._call(self._start(requests, on_outcome, prefetch_for))

    def wait(self, pending: list[Pending], owner: str | None = None) -> list[Outcome]:
        """Block until every pending request is settled, meanwhile letting `owner`'s prefetch use
        free slots. An outcome answered by a request another caller had in flight comes back
        marked `shared` (its cost is counted there)."""
        if not pending:
            return []
        results = self._call(self._wait(pending, owner))
        return [outcome if p.owned else outcome.as_shared() for outcome, p in zip(results, pending, strict=True)]

    def drop_prefetch(self) -> int:
        """Forget every prefetched request not started yet (a query that stopped early queued them).
        Called when a new dbt invocation starts: a key the new run asks for is then its own request,
        paid and recorded by the new run, not answered for a call of the old one. Returns how many."""
        with self._lock:
            if self._loop is None:
                return 0
        return self._call(self._drop_prefetch())

    def new_invocation(self) -> None:
        """A new dbt invocation has heard nothing from the provider yet (see outage.py), and a key
        or model refused in the last one is tried again."""
        with self._lock:
            if self._loop is None:
                return
        self._call(self._new_invocation())

    async def _new_invocation(self) -> None:
        self.outage.new_invocation()
        self._attempts.new_invocation()

    async def _drop_prefetch(self) -> int:
        dropped = self._prefetch.drop()
        for item in dropped:
            item.future.cancel()  # nobody waits on it: _forget takes the key out of the in-flight table
        return len(dropped)

    def cancel(self) -> None:
        """Stop the run (Ctrl-C, SIGTERM): nothing more is sent; every request waiting (queued, for
        a slot, the provider, the budget, a backoff) settles at once as `cancelled`, one on the wire
        once its answer lands or its grace period ends. Returns at once; safe from any thread."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._cancel_now)

    def resume(self) -> None:
        """A new run after a cancelled one: requests may be sent again."""
        with self._lock:
            loop = self._loop
        if loop is not None:
            loop.call_soon_threadsafe(self._stop.resume)

    def _cancel_now(self) -> None:
        self._stop.stop()
        for item in self._prefetch.drop():
            _settle_cancelled(item.future, item.request.key)

    def limiter(self, model: str) -> Limiter:
        """One limiter per model: every dbt thread and model of the process shares it."""
        if model not in self._limiters:
            s = self._settings
            self._limiters[model] = Limiter(
                s.max_concurrency, requests_per_minute=s.requests_per_minute, tokens_per_minute=s.tokens_per_minute
            )
        return self._limiters[model]

    # -- on the loop --
    async def _start(
        self, requests: list[Request], on_outcome: Callable[[Outcome], None], prefetch_for: str | None
    ) -> list[Pending]:
        loop = asyncio.get_running_loop()
        pending: list[Pending] = []
        now: list[Queued] = []
        for request in requests:
            existing = self._inflight.get(request.key)
            if existing is not None:
                pending.append(Pending(request.key, existing, owned=False))
                continue
            future: asyncio.Future[Outcome] = loop.create_future()
            self._inflight[request.key] = future
            future.add_done_callback(functools.partial(self._forget, request.key))
            pending.append(Pending(request.key, future, owned=True))
            item = Queued(request, on_outcome, future)
            if self._stop.stopping:
                _settle_cancelled(future, request.key)
            elif prefetch_for is None:
                now.append(item)
            else:
                self._prefetch.queue(prefetch_for, item)
        for pack in packs_of(now, lambda queued: queued.request, self._settings.pack_chars):
            self._prefetch.start(pack)
        self._prefetch.feed()
        return pending

    async def _start_needed(
        self,
        requests: list[Request],
        on_outcome: Callable[[Outcome], None],
        prefetch_for: str | None,
        still_needed: Callable[[str], bool],
    ) -> list[Pending]:
        needed = [r for r in requests if r.key in self._inflight or still_needed(r.key)]
        return await self._start(needed, on_outcome, prefetch_for)

    async def _wait(self, pending: list[Pending], owner: str | None) -> list[Outcome]:
        self._prefetch.want(p.key for p in pending)
        with self._prefetch.waiting(owner):
            return list(await asyncio.gather(*(p.future for p in pending)))

    async def _answer(self, items: list[Queued]) -> None:
        """Answer one request, or a pack of them; each item's future is settled as soon as its row is."""

        def done(index: int, outcome: Outcome) -> None:
            item = items[index]
            item.on_outcome(outcome)
            if not item.future.done():
                item.future.set_result(outcome)

        if len(items) == 1:
            done(0, await self._retries.answer(items[0].request))
        else:
            await self._packs.answer([item.request for item in items], done)

    def _forget(self, key: str, done: asyncio.Future[Outcome]) -> None:
        self._inflight.pop(key, None)
        if not done.cancelled():
            done.exception()  # retrieved here: a caller that never waits must not log "never retrieved"

    def _get_provider(self) -> Provider:
        """Built on the first request sent, so a fully cached run needs no key."""
        if self._provider is None:
            self._provider = self._provider_factory()
        return self._provider


def _settle_cancelled(future: asyncio.Future[Outcome], key: str) -> None:
    """A request that was never started: its callers get a `cancelled` outcome, nothing to record."""
    if not future.done():
        outcome = Outcome(key=key)
        cancelled(outcome)
        future.set_result(outcome)


__all__ = ["Budget", "DbtLlmError", "Engine", "EngineSettings", "Outcome", "Pending", "Request"]
