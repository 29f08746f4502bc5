"""The audit book: the account of every audit row of the current invocation."""

from __future__ import annotations

import threading
from typing import Any

from ..calls.call import Call
from ..calls.ledger import Ledger, LedgerKey
from .account import Account


class AuditBook:
    """Its lock guards which accounts exist; each account locks its own counters."""

    def __init__(self, provider: str) -> None:
        self._lock = threading.Lock()
        self._provider = provider
        self._accounts: dict[LedgerKey, Account] = {}

    def account_of(self, call: Call) -> Account:
        """The account of a call's audit row, shared by the calls of one model with the same function and model."""
        key = (call.invocation_id, call.node_id, call.batch_id, call.task.function, call.task.model)
        with self._lock:
            if key not in self._accounts:
                ledger = Ledger(
                    *key,
                    provider=self._provider,
                    command=call.command,
                    hooked=call.hooked,
                    on_error=call.on_error,
                    dry_run=call.dry_run,
                    owner=call.attribution.owner,
                    group_name=call.attribution.group_name,
                    tags=list(call.attribution.tags) if call.attribution.meta is not None else None,
                    meta=call.attribution.meta,
                )
                self._accounts[key] = Account(ledger)
            return self._accounts[key]

    def accounts_of(self, invocation_id: str, node_id: str) -> list[Account]:
        with self._lock:
            return [
                a
                for a in self._accounts.values()
                if (a.ledger.invocation_id, a.ledger.node_id) == (invocation_id, node_id)
            ]

    # -- dbt_llm_estimated(invocation_id, node_id): in a dry run's post-hook, before dbt_llm_finish --
    def estimated(self, invocation_id: str, node_id: str) -> int:
        """Requests a dry run of the model would send: the post-hook rolls back a model that is not a
        table when there are any."""
        return sum(a.ledger.est_requests for a in self.accounts_of(invocation_id, node_id))

    def open_accounts(self, node_id: str | None = None) -> list[Account]:
        with self._lock:
            return [a for a in self._accounts.values() if not a.ledger.closed and node_id in (None, a.ledger.node_id)]

    def running(self) -> list[tuple[Ledger, dict[str, Any]]]:
        """Ledgers still calling, each with a consistent snapshot of its counters."""
        return [(a.ledger, a.progress()) for a in self.open_accounts()]

    def invocation_ids(self) -> set[str]:
        with self._lock:
            return {a.ledger.invocation_id for a in self._accounts.values()}

    def forget_all_but(self, invocation_id: str) -> None:
        """A long-lived process (an orchestrator calling dbt many times) keeps only the current run."""
        with self._lock:
            self._accounts = {k: a for k, a in self._accounts.items() if a.ledger.invocation_id == invocation_id}
