"""A row's attempts until it has a valid answer: invalid answers and transient errors are retried
after a backoff, up to max_attempts (failures during an outage do not count) and within row_timeout;
the outcome then says why the row has none."""

from __future__ import annotations

import asyncio
import random

from ..functions.tasks import InvalidAnswer
from ..providers.base import RowError, TransientError
from .attempt import Attempts, BudgetReached, Row
from .outcome import Askable, Halt, Outcome
from .stop import Stopped


def backoff(error: Exception, counted: int) -> float:
    """Seconds before a row's next attempt; `counted` is its failures held against max_attempts."""
    if isinstance(error, TransientError) and error.retry_after is not None:
        return min(float(error.retry_after), 120.0)
    if isinstance(error, InvalidAnswer):
        return 0.0
    delay: float = min(20.0, 0.25 * 2.0 ** (counted - 1))
    return delay * random.uniform(0.5, 1.0)


def cancelled(outcome: Outcome) -> None:
    """The run was cancelled before the row got an answer (not a failure of the row: the next run sends it)."""
    outcome.error_kind = "cancelled"
    outcome.error = "no answer: the run was cancelled" if outcome.attempts else "not sent: the run was cancelled"


class Retries:
    def __init__(self, attempts: Attempts, *, max_attempts: int, row_timeout: float) -> None:
        self._attempts = attempts
        self._max_attempts = max_attempts
        self._row_timeout = row_timeout

    async def answer(self, request: Askable, so_far: Outcome | None = None, failures: int = 0) -> Outcome:
        """The row's outcome: its answer, or the error_kind and message of why it has none (a
        stopping one, Outcome.stops, when no row can be answered: a bad key, an unreachable
        provider). `so_far` and `failures` carry a row's tries in packs (pack_retries.py)."""
        outcome = so_far if so_far is not None else Outcome(key=request.key)
        row = Row(request, outcome, self._row_timeout, [None] * failures)
        outcome = row.outcome
        try:
            while True:
                try:
                    outcome.took(await self._attempts.attempt(row))
                    break
                except (TransientError, InvalidAnswer) as exc:
                    if isinstance(exc, InvalidAnswer):
                        row.failures.append(None)
                    left = row.time_left()
                    if row.counted() >= self._max_attempts or left <= 0:
                        raise
                    if row.failures and row.failures[-1] is not None and row.failures[-1].outage:
                        continue  # the outage gate paces the next try
                    await self._attempts.stop.until(asyncio.sleep(min(backoff(exc, row.counted()), left)))
        except Stopped:
            cancelled(outcome)
        except BudgetReached:
            outcome.error_kind = "budget"
            outcome.error = "not sent: max_cost_usd was reached"
        except TransientError as exc:
            if row.time_left() <= 0:
                outcome.error_kind = "row_timeout"
                outcome.error = f"no valid answer within row_timeout={self._row_timeout:g}s; last: {exc.kind}: {exc}"
            else:
                outcome.error_kind, outcome.error = "retries_exhausted", f"{exc.kind}: {exc}"
        except InvalidAnswer as exc:
            outcome.error_kind, outcome.error = "invalid_answer", str(exc)
        except RowError as exc:
            outcome.error_kind, outcome.error = exc.kind, str(exc)
        except Halt as exc:
            outcome.error_kind, outcome.error = exc.kind, str(exc)
        return outcome
