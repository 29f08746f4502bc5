"""What each outcome leaves behind: the answer remembered by the invocation and queued for the
writer as a cache row, or a failure queued as an error row. One per live call."""

from __future__ import annotations

from ..calls.call import Call
from ..calls.rows import CacheRow, ErrorRow, now
from ..engine import Outcome
from .account import Account
from .invocation import Invocation
from .writer import Writer


class Recorder:
    def __init__(self, call: Call, account: Account, invocation: Invocation, writer: Writer) -> None:
        self._call = call
        self._account = account
        self._invocation = invocation
        self._writer = writer

    def record(self, outcome: Outcome, texts: dict[str, str]) -> None:
        """On the engine's thread: what the outcome cost, and what it leaves in the tables. An
        extraction's invented values were nulled where the answer was checked (engine/outcome.py)."""
        call = self._call
        self._account.spend(outcome)
        self._account.count_ungrounded(outcome.ungrounded)
        if outcome.result is not None:
            self._account.count_confidence(outcome.confidence)
            self._invocation.remember(outcome.key, outcome.result, outcome.confidence)
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
                    confidence=outcome.confidence,
                )
            )
        elif outcome.error_kind not in ("budget", "cancelled"):  # rows left unsent are no errors
            self.error(outcome, texts)

    def error(self, outcome: Outcome, texts: dict[str, str], *, shared: bool = False) -> None:
        call = self._call
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
