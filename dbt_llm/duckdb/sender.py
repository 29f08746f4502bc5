"""Plans the requests of one live call and hands them to the engine, or to batch mode's jobs: only
keys not answered, pending or failed in this invocation, too-long inputs failed without a call, a
dry run priced instead of sent. It knows nothing of DuckDB: the runtime gives it texts by key."""

from __future__ import annotations

from collections.abc import Callable

from ..calls.estimate import estimate
from ..engine import Engine, Outcome, Pending, Request
from ..pricing import PriceTable
from .batch_mode import BatchMode
from .live_call import LiveCall


class Sender:
    def __init__(
        self,
        engine: Engine,
        prices: PriceTable,
        max_input_chars: int,
        on_first_request: Callable[[], None],
        batch_mode: BatchMode,
    ) -> None:
        self._engine = engine
        self._prices = prices
        self._max_input_chars = max_input_chars
        self._on_first_request = on_first_request
        self._batch_mode = batch_mode

    def send(
        self, live: LiveCall, texts_by_key: dict[str, str], prefetch: bool = False, limit: int | None = None
    ) -> None:
        """Plans the keys not yet answered, sent or failed for this call and hands them to the engine
        without waiting. From dbt_llm_submit they are a prefetch (sent only while this call's resolve
        waits, see Engine.submit); from resolve, rows DuckDB asks for: those start now, too-long
        inputs fail, and a dry run prices them instead."""
        call = live.call
        if call.dry_run and prefetch and not call.batch_id:
            return  # a dry run prices only the rows DuckDB asks for (a LIMIT may stop it early)
        fresh = live.unsent(texts_by_key)
        budget = live.budget
        requests: list[Request] = []
        limit = limit or self._max_input_chars  # llm_agg's merges: their own bound (duckdb/agg.py)
        for key, text in fresh.items():
            if len(text) > limit and prefetch:
                continue  # recorded as failed only if DuckDB asks for its row
            if len(text) > limit:  # only with on_long_input: fail; truncation happens in SQL
                live.fail(
                    Outcome(
                        key,
                        error_kind="input_too_long",
                        error=f"the input has {len(text)} characters, more than max_input_chars={limit}; "
                        "raise max_input_chars or set on_long_input: truncate",
                    )
                )
            else:
                requests.append(Request(key, call.task, text, budget, call.rows_per_request))
        if call.dry_run:
            if live.compared is not None:
                for request in requests:
                    live.compared.offer(request.key, request.text, "")
            self._estimate(live, requests)
        elif requests and call.mode == "batch" and prefetch:
            self._batch_mode.start(live, requests)  # every distinct miss, as jobs
        elif requests:
            live.add_pending(self._start(live, requests, prefetch))

    def collect_jobs(self, live: LiveCall) -> None:
        """Batch mode: wait for the call's jobs; lines it answers realtime go through `answer_now`."""
        self._batch_mode.collect(live, self.answer_now)

    def answer_now(self, live: LiveCall, requests: list[Request]) -> list[Outcome]:
        """Send and wait: batch mode's realtime fallback."""
        return self._engine.wait(self._start(live, requests, prefetch=False))

    def wait(self, pending: list[Pending], owner: str | None = None) -> list[Outcome]:
        return self._engine.wait(pending, owner=owner)

    def drain(self, live: LiveCall) -> list[Outcome]:
        """Send and wait for every request the call still has pending, its whole prefetch included."""
        return self._engine.wait(live.take_pending())

    def _start(self, live: LiveCall, requests: list[Request], prefetch: bool) -> list[Pending]:
        self._on_first_request()
        # Asked again on the engine's loop: another model's request for a key may land between our
        # check (live.unsent) and the submit, and the text must not be paid for twice.
        pending = self._engine.submit(
            requests,
            live.answered,
            prefetch_for=live.handle if prefetch else None,
            still_needed=lambda key: live.invocation.answer_of(key) is None,
        )
        live.account.count_queued(len(pending))
        return pending

    def _estimate(self, live: LiveCall, requests: list[Request]) -> None:
        """Dry run: what the requests would cost, sent nowhere. A key counts once per invocation,
        however many chunks or models ask for it."""
        price = self._prices.price(live.call.task.model, batch=live.call.mode == "batch")
        fresh = live.invocation.first_estimates([r.key for r in requests])
        requests = [r for r in requests if r.key in fresh]
        guess = estimate(requests, price, self._max_input_chars)
        live.account.estimate(
            guess.requests, guess.prompt_tokens, guess.completion_tokens, guess.cost_usd, share=live.estimate_share
        )
