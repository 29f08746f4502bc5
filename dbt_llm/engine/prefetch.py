"""When each request starts: at once, or as a prefetch for an owner. A prefetched request starts
only while a caller waits for its owner and its model has a free slot, in the order submitted; the
keys a caller waits for start first. A query that stops early (a LIMIT) then pays for about one
round of slots more than it used, not for every row."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from .outcome import Outcome, Request
from .packing import packs_of, take_pack


@dataclass(frozen=True)
class Queued:
    """A request, the callback for its outcome, and the future its callers wait on."""

    request: Request
    on_outcome: Callable[[Outcome], None]
    future: asyncio.Future[Outcome]


class Prefetch:
    """Starts requests through `answer` and settles their futures; `slots(model)` is how many of a
    model's requests may run at once. Used on the engine's loop only."""

    def __init__(
        self, answer: Callable[[list[Queued]], Coroutine[Any, Any, None]], slots: Callable[[str], int], pack_chars: int
    ) -> None:
        self._answer = answer
        self._slots = slots
        self._pack_chars = pack_chars
        self._queues: dict[str, dict[str, Queued]] = {}  # per owner, requests not started yet, in submit order
        self._owner: dict[str, str] = {}  # who queued each key
        self._demand: dict[str, int] = {}  # callers waiting, per owner
        self._started: dict[str, int] = {}  # started and unfinished requests, per model

    def queue(self, owner: str, item: Queued) -> None:
        self._queues.setdefault(owner, {})[item.request.key] = item
        self._owner[item.request.key] = owner

    def start(self, items: list[Queued]) -> None:
        """Start one request, or one pack of rows (packing.py): it takes one slot of its model."""
        model = items[0].request.task.model
        self._started[model] = self._started.get(model, 0) + 1

        def settle(task: asyncio.Task[None]) -> None:
            self._started[model] -= 1
            for item in items:  # each row's future is set when its answer is in; these never got one
                if item.future.done():
                    continue
                if task.cancelled():
                    item.future.cancel()
                elif task.exception() is not None:
                    item.future.set_exception(task.exception())  # type: ignore[arg-type]
                else:
                    item.future.set_exception(RuntimeError(f"dbt_llm: no outcome for {item.request.key}"))
            self.feed()

        asyncio.ensure_future(self._answer(items)).add_done_callback(settle)

    def want(self, keys: Iterable[str]) -> None:
        """Start these keys now, out of any prefetch queue, ahead of the rest."""
        wanted: list[Queued] = []
        for key in keys:
            owner = self._owner.pop(key, None)
            if owner is not None:
                wanted.append(self._queues[owner].pop(key))
        for pack in packs_of(wanted, _request, self._pack_chars):
            self.start(pack)

    def drop(self) -> list[Queued]:
        """Take every request not started yet, of every owner, out of the queues."""
        dropped = [item for queue in self._queues.values() for item in queue.values()]
        self._queues, self._owner = {}, {}
        self._demand = {owner: n for owner, n in self._demand.items() if n > 0}
        return dropped

    @contextmanager
    def waiting(self, owner: str | None) -> Iterator[None]:
        """While a caller waits: `owner`'s prefetch may use free slots."""
        if owner is None:
            yield
            return
        self._demand[owner] = self._demand.get(owner, 0) + 1
        self.feed()
        try:
            yield
        finally:
            self._demand[owner] -= 1

    def feed(self) -> None:
        """Start prefetched requests of owners someone is waiting for, while their model has a free slot."""
        for owner, waiting in self._demand.items():
            queue = self._queues.get(owner)
            while waiting > 0 and queue:
                items = iter(queue.values())
                first = next(items)
                if self._started.get(first.request.task.model, 0) >= self._slots(first.request.task.model):
                    break
                pack = take_pack(first, items, _request, self._pack_chars)
                for item in pack:
                    del queue[item.request.key]
                    del self._owner[item.request.key]
                self.start(pack)


def _request(item: Queued) -> Request:
    return item.request
