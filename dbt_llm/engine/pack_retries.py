"""A pack's attempts until every row has an outcome.

- A pack that fails (a 5xx, a timeout, a refused request) or comes back cut or unreadable is split
  in halves, recursively, rather than sent whole again.
- A row whose own answer is invalid waits in a pool with the invalid rows of other packs of its
  task, and is sent again in a pack half the size of the last (K/2, K/4, ... down to one row, which
  retries.py answers as any unpacked row). The pool is sent once it fills such a pack or no other
  pack of the task is in flight, so retries cost about invalid rows / (K/2) requests, not one each.
- A 429, or a provider that is down, waits and sends the pack whole.

Each pack's usage and cost are shared out among its rows so that the rows' sums equal what the
provider billed; the request itself is charged to the pack's first row."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ..functions.tasks import InvalidAnswer
from ..providers.base import RowError, TransientError
from .attempt import Attempts, BudgetReached, Row
from .outcome import Answer, Halt, Outcome, Request
from .packing import Pack, Signature, shares, signature
from .retries import Retries, backoff, cancelled
from .stop import Stopped


@dataclass
class PackedRow:
    request: Request
    outcome: Outcome
    done: Callable[[Outcome], None]  # gets the row's final outcome
    finished: asyncio.Future[None]  # what the caller that handed the row over waits on
    failures: int = 0  # its own invalid answers, held against max_attempts

    def finish(self) -> None:
        self.done(self.outcome)
        self.finished.set_result(None)


PoolKey = tuple[Signature, int]  # the rows' signature, their failures so far


class PackRetries:
    """Used on the engine's loop only."""

    def __init__(self, attempts: Attempts, retries: Retries, *, max_attempts: int, row_timeout: float) -> None:
        self._attempts = attempts
        self._retries = retries
        self._max_attempts = max_attempts
        self._row_timeout = row_timeout
        self._in_flight: Counter[Signature] = Counter()  # packs being sent, per signature
        self._pool: dict[PoolKey, list[PackedRow]] = {}  # invalid rows waiting to be packed again

    async def answer(self, requests: list[Request], done: Callable[[int, Outcome], None]) -> None:
        """Answer every request; `done(index, outcome)` gets each row's final outcome as soon as it is
        known. Returns once every row has one (some may be answered by packs of other callers)."""
        loop = asyncio.get_running_loop()

        def row_done(index: int) -> Callable[[Outcome], None]:
            return lambda outcome: done(index, outcome)

        rows = [PackedRow(r, Outcome(key=r.key), row_done(i), loop.create_future()) for i, r in enumerate(requests)]
        await self._solve(rows)
        await asyncio.gather(*(row.finished for row in rows))

    async def _solve(self, rows: list[PackedRow]) -> None:
        if len(rows) == 1:
            row = rows[0]
            row.outcome = await self._retries.answer(row.request, row.outcome, row.failures)
            row.finish()
            return
        pack = Pack(tuple(row.request for row in rows))
        sig = signature(rows[0].request)
        tries = Row(pack, Outcome(key=pack.key), self._row_timeout)
        starts = [r.outcome.clock_from for r in rows if r.outcome.clock_from is not None]
        tries.outcome.clock_from = min(starts) if starts else None
        self._in_flight[sig] += 1
        content: Answer | None = None  # the pack's envelope
        ended: Halt | None = None  # every row ends with this error, unsplit
        stopped = False  # the run was cancelled
        try:
            content = await self._send(tries)
        except BudgetReached:
            ended = Halt("budget", "not sent: max_cost_usd was reached")
        except Stopped:
            stopped = True
        except (TransientError, InvalidAnswer, RowError):
            pass  # split below
        except Halt as exc:
            ended = exc  # pooled rows of the pack's task meet the same Halt when they are sent
        finally:
            self._in_flight[sig] -= 1
        self._charge(tries.outcome, rows)
        if content is not None:
            self._settle(rows, pack.answers(content), tries, sig)
        elif ended is not None or stopped:
            for row in rows:
                if ended is None:
                    cancelled(row.outcome)
                else:
                    row.outcome.error_kind, row.outcome.error = ended.kind, str(ended)
                row.finish()
        else:
            half = len(rows) // 2
            await asyncio.gather(self._solve(rows[:half]), self._solve(rows[half:]))
        await self._flush(sig)

    def _settle(self, rows: list[PackedRow], answers: list[Answer | InvalidAnswer], tries: Row, sig: Signature) -> None:
        """Valid answers are final; invalid ones go to the pool while the row has attempts and time left."""
        for row, answer in zip(rows, answers, strict=True):
            if isinstance(answer, Answer):
                row.outcome.took(answer)
                row.finish()
                continue
            row.failures += 1
            if row.failures >= self._max_attempts or tries.time_left() <= 0:
                row.outcome.error_kind, row.outcome.error = "invalid_answer", str(answer)
                row.finish()
            else:
                self._pool.setdefault((sig, row.failures), []).append(row)

    async def _flush(self, sig: Signature) -> None:
        """Send the pooled rows of `sig` that fill a pack, or all of them when no pack of `sig` is in
        flight (none will join them)."""
        sends: list[list[PackedRow]] = []
        for key in [k for k in self._pool if k[0] == sig]:
            pool = self._pool[key]
            size = max(1, sig[2] >> key[1])  # K / 2**failures
            while len(pool) >= size or (pool and self._in_flight[sig] == 0):
                sends.append(pool[:size])
                del pool[:size]
            if not pool:
                del self._pool[key]
        await asyncio.gather(*(self._solve(rows) for rows in sends))

    async def _send(self, tries: Row) -> Answer:
        """The pack's answer; a 429 or an outage waits and sends it whole again (within max_attempts
        and row_timeout); any other failure is raised, for the caller to split the pack."""
        while True:
            try:
                return await self._attempts.attempt(tries)
            except TransientError as exc:
                streak = tries.failures[-1] if tries.failures else None
                if streak is not None and streak.outage:
                    continue  # the outage gate paces the next try
                counted, left = tries.counted(), tries.time_left()
                if exc.kind != "rate_limited" or counted >= self._max_attempts or left <= 0:
                    raise
                await self._attempts.stop.until(asyncio.sleep(min(backoff(exc, counted), left)))

    @staticmethod
    def _charge(tries: Outcome, rows: list[PackedRow]) -> None:
        """Share the pack's tries out among its rows: every row was in each request, the first row is
        charged the requests themselves, usage and cost are split evenly."""
        if tries.attempts == 0:
            return
        resent = any(row.outcome.attempts for row in rows)  # a split or re-packed pack is a retry
        leader = rows[0].outcome
        leader.requests += tries.requests
        leader.retry_requests += tries.requests if resent else tries.retry_requests
        leader.rate_limited += tries.rate_limited
        cost = None if tries.cost_usd is None else tries.cost_usd / len(rows)
        for row, usage in zip(rows, shares(tries.usage, len(rows)), strict=True):
            outcome = row.outcome
            outcome.attempts += tries.attempts
            outcome.usage = outcome.usage + usage
            outcome.cost_usd = None if cost is None or outcome.cost_usd is None else outcome.cost_usd + cost
            if outcome.clock_from is None:
                outcome.clock_from = tries.clock_from
