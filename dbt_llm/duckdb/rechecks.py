"""Rechecks: a sample of the cached rows a call read, asked again at the same spec, bypassing the cache,
and compared with the cached answers. The new answers are counted (requests, tokens, cost, agreement)
but never written: the cache keeps the answers the models were built from."""

from __future__ import annotations

from collections.abc import Callable

from ..engine import Engine, Outcome, Request
from .live_call import LiveCall

RECHECK_PREFIX = "recheck:"  # the engine's key of a recheck request: never the key of a request for the cache


class Rechecks:
    def __init__(self, engine: Engine, log: Callable[[str], None]) -> None:
        self._engine = engine
        self._log = log

    def run(self, calls: list[LiveCall]) -> None:
        """Ask every sampled row of the calls again (all calls at once: they share the limiter), count
        what was paid and what agreed into each call's audit row."""
        asked: list[tuple[LiveCall, dict[str, tuple[str, str]]]] = []
        pending = []
        for live in calls:
            rows = live.sample.take() if live.sample is not None else {}
            if not rows:
                continue
            call = live.call
            requests = [
                Request(RECHECK_PREFIX + key, call.task, text, live.budget, call.rows_per_request)
                for key, (text, _) in rows.items()
            ]
            # Spent as it arrives, like any request; never recorded for the cache or the invocation.
            asked.append((live, rows))
            pending.append(self._engine.submit(requests, live.account.spend))
        for (live, rows), waiting in zip(asked, pending, strict=True):
            self._count(live, rows, self._engine.wait(waiting))

    def _count(self, live: LiveCall, rows: dict[str, tuple[str, str]], outcomes: list[Outcome]) -> None:
        kind = live.call.task.kind
        answered = [o for o in outcomes if o.result is not None]
        agree = sum(kind.agrees(rows[o.key.removeprefix(RECHECK_PREFIX)][1], o.result or "") for o in answered)
        live.account.count_recheck(len(answered), agree)
        call = live.call
        unanswered = len(outcomes) - len(answered)
        self._log(
            f"dbt_llm recheck: {call.where} llm_{call.task.function} ({call.task.model}): {agree} of "
            f"{len(answered)} cached answer(s) asked again agree"
            + (f"; {unanswered} recheck request(s) got no answer" if unanswered else "")
        )
