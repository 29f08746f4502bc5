"""Each outcome as it arrives: counted in its ledger, remembered by the invocation, and queued
for the writer as a cache row (an answer) or an error row (a failure)."""

from __future__ import annotations

import threading

from ..calls.call import Call
from ..calls.ledger import Ledger
from ..calls.rows import CacheRow, ErrorRow, now
from ..engine import Outcome
from .invocation import Invocation
from .writer import Writer


class Recorder:
    def __init__(self, lock: threading.RLock, writer: Writer) -> None:
        self._lock = lock
        self._writer = writer

    def record(
        self, call: Call, invocation: Invocation, ledger: Ledger, outcome: Outcome, texts: dict[str, str]
    ) -> None:
        """On the engine's thread: what the outcome cost, and what it leaves in the tables. An
        extraction's invented values were nulled where the answer was checked (engine/outcome.py)."""
        self.spend(ledger, outcome)
        with self._lock:
            ledger.ungrounded_values += outcome.ungrounded
            if outcome.result is not None:
                invocation.answers[outcome.key] = outcome.result
        if outcome.result is not None:
            self._writer.put_cache(
                CacheRow(
                    key=outcome.key,
                    function=call.task.function,
                    model=call.task.model,
                    result=outcome.result,
                    prompt_tokens=outcome.usage.prompt_tokens,
                    completion_tokens=outcome.usage.completion_tokens,
                    cost_usd=outcome.cost_usd,
                    created_at=now(),
                    invocation_id=call.invocation_id,
                    node_id=call.node_id,
                )
            )
        elif outcome.error_kind != "budget":  # rows left by the budget are counted, not errors
            self.error(call, outcome, texts)

    def spend(self, ledger: Ledger, outcome: Outcome) -> None:
        """Count what the outcome's requests cost in the ledger (no table row)."""
        with self._lock:
            ledger.api_calls += outcome.requests
            ledger.sent_rows += outcome.attempts > 0
            ledger.retries += outcome.retry_requests
            ledger.rate_limited += outcome.rate_limited
            ledger.prompt_tokens += outcome.usage.prompt_tokens
            ledger.completion_tokens += outcome.usage.completion_tokens
            ledger.cached_prompt_tokens += outcome.usage.cached_tokens
            if ledger.cost_usd is not None:
                ledger.cost_usd = None if outcome.cost_usd is None else ledger.cost_usd + outcome.cost_usd

    def error(self, call: Call, outcome: Outcome, texts: dict[str, str], *, shared: bool = False) -> None:
        message = outcome.error or ""
        if shared:
            message += " (the request was sent for another model of this run with the same text)"
        self._writer.put_error(
            ErrorRow(
                invocation_id=call.invocation_id,
                node_id=call.node_id,
                key=outcome.key,
                function=call.task.function,
                model=call.task.model,
                error_kind=outcome.error_kind or "retries_exhausted",
                message=message,
                attempts=outcome.attempts,
                input_preview=texts.get(outcome.key, "")[:200],
                created_at=now(),
            )
        )
