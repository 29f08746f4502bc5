"""The audit book: every ledger of the current invocation."""

from __future__ import annotations

import threading
from typing import Any

from ..calls.ledger import Ledger, LedgerKey
from ..calls.rows import AUDIT_COLUMNS, AuditRow, Status, now, row_dict
from ..config import OnError


class AuditBook:
    """Every ledger of the current invocation, under the runtime's lock."""

    def __init__(self, lock: threading.RLock, provider: str) -> None:
        self.lock = lock
        self._provider = provider
        self._ledgers: dict[LedgerKey, Ledger] = {}

    def ledger(
        self,
        invocation_id: str,
        node_id: str,
        batch_id: str,
        function: str,
        model: str,
        *,
        command: str,
        hooked: bool,
        on_error: OnError,
        dry_run: bool,
    ) -> Ledger:
        key = (invocation_id, node_id, batch_id, function, model)
        with self.lock:
            if key not in self._ledgers:
                self._ledgers[key] = Ledger(
                    *key,
                    provider=self._provider,
                    command=command,
                    hooked=hooked,
                    on_error=on_error,
                    dry_run=dry_run,
                )
            return self._ledgers[key]

    def ledgers_of(self, invocation_id: str, node_id: str) -> list[Ledger]:
        with self.lock:
            return [lg for lg in self._ledgers.values() if (lg.invocation_id, lg.node_id) == (invocation_id, node_id)]

    def open_ledgers(self, node_id: str | None = None) -> list[Ledger]:
        with self.lock:
            return [lg for lg in self._ledgers.values() if not lg.closed and node_id in (None, lg.node_id)]

    def running(self) -> list[tuple[Ledger, dict[str, Any]]]:
        """Ledgers still calling, each with a consistent snapshot of its counters."""
        with self.lock:
            return [
                (lg, {**row_dict(lg, AUDIT_COLUMNS), "reused": lg.reused, "queued": lg.queued, "answered": lg.answered})
                for lg in self._ledgers.values()
                if not lg.closed
            ]

    def close(self, ledger: Ledger, status: Status) -> AuditRow:
        """Settle a ledger; returns the row to write."""
        with self.lock:
            ledger.status, ledger.finished_at, ledger.closed, ledger.written = status, now(), True, True
            return ledger.row()

    def snapshot(self, ledger: Ledger) -> AuditRow:
        with self.lock:
            ledger.finished_at, ledger.written = now(), True
            if not ledger.closed:
                ledger.status = "preview" if ledger.preview else "running"
            return ledger.row()

    def forget_all_but(self, invocation_id: str) -> None:
        """A long-lived process (an orchestrator calling dbt many times) keeps only the current run."""
        with self.lock:
            self._ledgers = {k: lg for k, lg in self._ledgers.items() if lg.invocation_id == invocation_id}
