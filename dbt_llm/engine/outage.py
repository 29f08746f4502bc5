"""Provider outages: while the provider looks down, requests wait behind one probe request sent at
growing intervals, instead of every row burning its retries in a few seconds; the first answer
lets everyone resume.

The provider looks down after a connection error (refused, reset), or after 5xx answers and
timeouts of several distinct rows with no answer in between. One row that keeps failing while
others are answered (a "poison" row) is not an outage: its failures stay its own.

A provider that went away mid-run is waited for, each row up to its row_timeout. One that has not
answered once since the invocation started, and refuses connections (nothing listening, DNS, TLS),
is given `unreachable_after` seconds: then every waiting row, of every call, fails with its error
(a wrong base_url would otherwise hold each function's rows for a row_timeout, one after the other).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Callable

from ..providers.base import TransientError
from .outcome import Halt

FIRST_DELAY = 0.5  # seconds before the first probe; doubled after each failed one
MAX_DELAY = 15.0
DISTINCT_ROWS = 3  # rows whose 5xx or timeouts, with no answer in between, make an outage
UNREACHABLE_AFTER = 45.0  # seconds a provider that never answered may refuse connections
_UNREACHABLE = frozenset({"unreachable"})  # no connection could be made (providers/openai.py)
_DOWN_AT_ONCE = frozenset({"connection"}) | _UNREACHABLE
_STREAK_KINDS = frozenset({"server_error", "timeout", "bad_response"})


class Streak:
    """Failures since the provider last answered. `outage` turns True once they add up to one,
    also for the failures before that: none of them is held against its row."""

    def __init__(self) -> None:
        self.rows: set[str] = set()
        self.outage = False


class Outage:
    """Shared by every request to one provider; used on the engine's event loop only."""

    def __init__(
        self,
        *,
        first_delay: float = FIRST_DELAY,
        max_delay: float = MAX_DELAY,
        distinct_rows: int = DISTINCT_ROWS,
        jitter: Callable[[], float] = lambda: random.uniform(0.8, 1.2),
        unreachable_after: float = UNREACHABLE_AFTER,
    ) -> None:
        self._first_delay, self._max_delay, self._distinct_rows = first_delay, max_delay, distinct_rows
        self._unreachable_after = unreachable_after
        self._jitter = jitter
        self._streak: Streak | None = None
        self._down = False
        self._delay = first_delay
        self._next_probe = 0.0  # monotonic time the next probe may go
        self._probe_out = False  # a probe is granted and not done
        self._probe_ready = False  # a probe is due and nobody was waiting to send it
        self._waiters: deque[asyncio.Future[bool]] = deque()
        self._timer: asyncio.TimerHandle | None = None
        self._last: TransientError | None = None
        self.outages = 0  # times the provider went down, for logs and tests
        self._answered_once = False  # in this invocation
        self._verdict: asyncio.TimerHandle | None = None  # when a provider that never answered is given up
        self._gave_up: Halt | None = None

    @property
    def down(self) -> bool:
        return self._down

    def why(self) -> str | None:
        """While rows wait for the provider, the error that says why (its URL and what failed); None
        once it is given up: rows no longer wait."""
        if not self._down or self._last is None or self._gave_up is not None:
            return None
        return str(self._last)

    def new_invocation(self) -> None:
        """A new invocation has not heard from the provider yet: down since its start is given up."""
        self._answered_once, self._gave_up = False, None
        if self._verdict is not None:
            self._verdict.cancel()
            self._verdict = None
        if self._down and self._last is not None and self._last.kind in _UNREACHABLE:
            self._start_verdict()

    async def wait(self, deadline: float) -> bool:
        """Return at once while the provider is up. While it is down, wait until it is up again
        (False) or until this caller is to send the probe (True). At the monotonic `deadline`,
        raise the last error that made it look down; once a provider that never answered is given
        up, raise Halt."""
        if self._gave_up is not None:
            raise Halt(self._gave_up.kind, str(self._gave_up))
        if not self._down:
            return False
        if self._probe_ready and not self._probe_out:
            self._probe_ready, self._probe_out = False, True
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await asyncio.wait([future], timeout=max(0.0, deadline - time.monotonic()))
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None and future.result():
                self.probe_done()  # granted the probe as it was cancelled: pass it on
            future.cancel()
            raise
        if not future.done():
            future.cancel()  # on the loop, so no grant can land between the check and this
            last = self._last
            raise TransientError(last.kind if last else "connection", f"the provider looks down: {last}")
        return future.result()

    def answered(self) -> None:
        """The provider answered (any HTTP answer but a 5xx): up again, everyone resumes."""
        self._streak = None
        self._answered_once, self._gave_up = True, None
        if self._verdict is not None:
            self._verdict.cancel()
            self._verdict = None
        if not self._down:
            return
        self._down, self._probe_ready, self._delay = False, False, self._first_delay
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(False)

    def failed(self, row: str, error: TransientError, *, probe: bool) -> Streak | None:
        """Record a failed request of `row`; returns the streak it belongs to (None for a 429,
        which the limiter handles and which shows the provider is up)."""
        if error.kind == "rate_limited":
            self.answered()
            return None
        if error.kind not in _STREAK_KINDS | _DOWN_AT_ONCE:
            return None
        self._last = error
        streak = self._streak = self._streak or Streak()
        streak.rows.add(row)
        now = time.monotonic()
        if not self._down and (error.kind in _DOWN_AT_ONCE or len(streak.rows) >= self._distinct_rows):
            streak.outage, self._down = True, True
            self.outages += 1
            self._delay = self._first_delay
            self._next_probe = now + self._delay * self._jitter()
        elif self._down and probe:
            self._delay = min(self._max_delay, self._delay * 2)
            self._next_probe = now + self._delay * self._jitter()
        if error.kind in _UNREACHABLE and not self._answered_once and self._verdict is None and not self._gave_up:
            self._start_verdict()
        if self._down:
            streak.outage = True
            if error.retry_after is not None:
                self._next_probe = max(self._next_probe, now + error.retry_after)
            self._schedule()
        return streak

    def probe_done(self) -> None:
        """The probe's request is over: answered, failed (after `failed`) or never sent."""
        self._probe_out = False
        self._schedule()

    def _schedule(self) -> None:
        if not self._down or self._probe_out:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, self._next_probe - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._grant)

    def _start_verdict(self) -> None:
        self._verdict = asyncio.get_running_loop().call_later(self._unreachable_after, self._give_up)

    def _give_up(self) -> None:
        """Still no answer since the invocation started: every waiting row fails, and every row to come."""
        self._verdict = None
        if self._answered_once or not self._down:
            return
        self._gave_up = Halt(
            "unreachable",
            f"no answer from the provider in the {self._unreachable_after:g}s since this run's first request "
            f"({self._last}). Check `base_url` in the dbt_llm plugin config (it usually ends in /v1) and that "
            "the server is running and reachable from this machine",
        )
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_exception(Halt("unreachable", str(self._gave_up)))

    def _grant(self) -> None:
        """Hand the probe to the longest waiting caller, or to the next one to come."""
        self._timer = None
        if not self._down or self._probe_out:
            return
        while self._waiters:
            future = self._waiters.popleft()
            if not future.done():
                future.set_result(True)
                self._probe_out = True
                return
        self._probe_ready = True
