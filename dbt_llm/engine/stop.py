"""Stopping a run (Ctrl-C, SIGTERM): every wait of a request (the outage gate, a limiter slot, the
budget, a backoff) ends at once, nothing more is sent, and a request on the wire gets `grace`
seconds to land, so an answer already paid for is still recorded and cached."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")

GRACE_SECONDS = 5.0  # how long a request on the wire may still take once the run is cancelled


class Stopped(Exception):
    """The run was cancelled: the request was not sent, or its answer was not awaited."""


class Stop:
    """Shared by every request of one engine; used on the engine's loop only."""

    def __init__(self, grace: float = GRACE_SECONDS) -> None:
        self.grace = grace
        self._event: asyncio.Event | None = None  # created on the loop, set once stopping

    @property
    def stopping(self) -> bool:
        return self._event is not None and self._event.is_set()

    def stop(self) -> None:
        self._stopped().set()

    def resume(self) -> None:
        """A new run: requests may go again."""
        self._event = None

    def check(self) -> None:
        if self.stopping:
            raise Stopped()

    async def until(self, waiting: Awaitable[T], *, grace: bool = False) -> T:
        """Await `waiting` unless the run stops first (with `grace`: and grace seconds pass), then
        raise Stopped. What `waiting` had already got (a slot) is returned, for its owner to release."""
        self.check()
        task = asyncio.ensure_future(waiting)
        stopped = asyncio.ensure_future(self._after_stop(grace))
        try:
            await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        finally:
            stopped.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            if task.cancelled():
                raise Stopped()
        return task.result()

    async def _after_stop(self, grace: bool) -> None:
        await self._stopped().wait()
        if grace:
            await asyncio.sleep(self.grace)

    def _stopped(self) -> asyncio.Event:
        if self._event is None:
            self._event = asyncio.Event()
        return self._event
