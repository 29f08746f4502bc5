"""Plans the requests of one call and hands them to the engine: only keys not answered, pending
or failed in this invocation, too-long inputs failed without a call, a dry run priced instead of
sent. It knows nothing of DuckDB: the runtime gives it texts by key."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..calls.call import Call
from ..calls.ledger import Ledger
from ..engine import Engine, Outcome, Request
from ..engine.packing import estimate_tokens, packs_of
from ..pricing import PriceTable
from .batch_mode import BatchMode
from .invocation import Invocation
from .recorder import Recorder


class Sender:
    def __init__(
        self,
        lock: threading.RLock,
        engine: Engine,
        recorder: Recorder,
        prices: PriceTable,
        max_input_chars: int,
        on_first_request: Callable[[], None],
    ) -> None:
        self._lock = lock
        self.engine = engine
        self.recorder = recorder
        self._prices = prices
        self._max_input_chars = max_input_chars
        self._on_first_request = on_first_request
        self.batch_mode: BatchMode | None = None  # set by the runtime: where batch-mode calls send

    def send(
        self, call: Call, invocation: Invocation, ledger: Ledger, texts_by_key: dict[str, str], prefetch: bool = False
    ) -> None:
        """Plans the keys not yet answered, sent or failed for this call and hands them to the engine
        without waiting. From dbt_llm_submit they are a prefetch (sent only while this call's resolve
        waits, see Engine.submit); from resolve, rows DuckDB asks for: those start now, too-long
        inputs fail, and a dry run prices them instead."""
        if call.dry_run and prefetch and not call.batch_id:
            return  # a dry run prices only the rows DuckDB asks for (a LIMIT may stop it early)
        with self._lock:
            budget = invocation.budget_of(call)
            jobs = invocation.batch_jobs.get(call.handle)
            in_jobs = {**jobs.requests, **jobs.borrowed} if jobs is not None else {}
            fresh = {
                k: t
                for k, t in texts_by_key.items()
                if k not in invocation.answers
                and (call.handle, k) not in invocation.pending
                and (call.handle, k) not in invocation.failed
                and k not in in_jobs  # batch mode: its job answers it
            }
        requests: list[Request] = []
        limit = self._max_input_chars
        for key, text in fresh.items():
            if len(text) > limit and prefetch:
                continue  # recorded as failed only if DuckDB asks for its row
            if len(text) > limit:  # only with on_long_input: fail; truncation happens in SQL
                outcome = Outcome(
                    key,
                    error_kind="input_too_long",
                    error=f"the input has {len(text)} characters, more than max_input_chars={limit}; "
                    "raise max_input_chars or set on_long_input: truncate",
                )
                with self._lock:
                    invocation.failed[(call.handle, key)] = outcome
                self.recorder.record(call, invocation, ledger, outcome, fresh)
            else:
                requests.append(Request(key, call.task, text, budget, call.rows_per_request))
        if call.dry_run:
            self._estimate(call, invocation, ledger, requests)
            return
        if not requests:
            return
        if call.mode == "batch" and prefetch and self.batch_mode is not None:
            self.batch_mode.start(call, invocation, ledger, requests)  # every distinct miss, as jobs
            return
        with self._lock:
            ledger.queued += len(requests)
        self._on_first_request()

        def on_outcome(outcome: Outcome) -> None:
            with self._lock:
                ledger.answered += 1
            self.recorder.record(call, invocation, ledger, outcome, fresh)

        pending = self.engine.submit(requests, on_outcome, prefetch_for=call.handle if prefetch else None)
        with self._lock:
            for p in pending:  # another thread may have sent the same key meanwhile: keep the owner
                if p.owned or (call.handle, p.key) not in invocation.pending:
                    invocation.pending[(call.handle, p.key)] = p

    def drain(self, call: Call, invocation: Invocation) -> list[Outcome]:
        """Send and wait for every request the call still has pending, its whole prefetch included."""
        with self._lock:
            pending = invocation.pending_of(call.handle)
        return self.engine.wait(pending)

    def _estimate(self, call: Call, invocation: Invocation, ledger: Ledger, requests: list[Request]) -> None:
        """Dry run: what the requests would cost, sent nowhere."""
        price = self._prices.price(call.task.model, batch=call.mode == "batch")
        prompt = completion = 0
        with self._lock:
            requests = [r for r in requests if r.key not in invocation.estimated]
            invocation.estimated.update(r.key for r in requests)
        packs = packs_of(requests, lambda request: request, self._max_input_chars)
        for pack in packs:
            p, c = estimate_tokens(pack)
            prompt, completion = prompt + p, completion + c
        with self._lock:
            # A key counted once per invocation, however many chunks or models ask for it.
            ledger.est_requests += len(packs)
            ledger.est_prompt_tokens += prompt
            ledger.est_completion_tokens += completion
            if ledger.est_cost_usd is not None:
                ledger.est_cost_usd = None if price is None else ledger.est_cost_usd + price.cost(prompt, completion)
