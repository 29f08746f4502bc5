"""Settles audit rows: at a model's post-hook (and fails the model if its rows say so), when a
microbatch batch fails on its own rows, when dbt says a node ended, when a new invocation starts.
A settled row's status is final and written before anyone is told."""

from __future__ import annotations

import threading
from collections.abc import Callable

from ..calls import verdict
from ..calls.call import Call
from ..calls.ledger import Ledger, summary
from ..calls.rows import Status
from ..engine import Outcome
from ..errors import DbtLlmError
from .audit_book import AuditBook
from .invocation import Invocation
from .writer import Writer


class Settler:
    def __init__(
        self,
        lock: threading.RLock,
        book: AuditBook,
        writer: Writer,
        log: Callable[[str], None],
        schema: Callable[[], str | None],
    ) -> None:
        self._lock = lock
        self._book = book
        self._writer = writer
        self._log = log
        self._schema = schema

    def close_ledgers(self, ledgers: list[Ledger], *, node_failed: bool) -> None:
        """Settle the ledgers that have a row (one whose statement never ran has none to settle)."""
        rows = [self._book.close(lg, lg.final_status(node_failed=node_failed)) for lg in ledgers if lg.written]
        for row in rows:
            self._writer.put_audit(row)
        if rows:
            self._writer.flush()

    def node_finished(self, node_id: str, failed: bool) -> None:
        """dbt's NodeFinished: a post-hook already settled a model that ran it; this settles previews,
        models whose SQL failed, and each microbatch batch (the batches of an LLM model run one after
        another, see _llm_prepare)."""
        ledgers = self._book.open_ledgers(node_id)
        self.close_ledgers(ledgers, node_failed=failed)
        for lg in ledgers:
            if lg.written:
                self._log(summary(lg))

    def fail_batch(self, call: Call, invocation: Invocation, ledger: Ledger, drained: list[Outcome]) -> DbtLlmError:
        """A microbatch batch fails on its own rows, in its own statement (dbt runs the post-hook only
        after the last batch), once every text it queued was answered (`drained`): all its failures are
        recorded and every answer it paid for is cached."""
        with self._lock:
            invocation.failed.update(((call.handle, o.key), o) for o in drained if not o.ok)
            failures = [o for (h, _), o in invocation.failed.items() if h == call.handle]
            skipped = sum(o.error_kind == "budget" for o in failures)
            ledger.failed_rows += sum(not o.ok and o.error_kind != "budget" for o in drained)
            ledger.skipped_rows += sum(o.error_kind == "budget" for o in drained)
            status: Status = "budget_exceeded" if skipped else "failed_rows"
            budget = invocation.budget_of(call)
        self._settle_now(ledger, status)
        if skipped:
            return verdict.budget_error(call.where, budget, skipped, batch=True)
        query = verdict.errors_query(self._schema(), call.invocation_id, call.node_id)
        return verdict.batch_failed(call.where, len(failures) - skipped, query)

    def batch_dry_run(self, call: Call, ledger: Ledger) -> DbtLlmError:
        """dbt commits each batch on its own, so a dry run stops a batch once it is priced."""
        self._settle_now(ledger, "dry_run")
        return verdict.batch_dry_run(call.where, ledger)

    def finish_model(self, invocation: Invocation, node_id: str, materialized: str) -> str:
        """The model's post-hook: settle its open ledgers (batches of a microbatch model that failed or
        finished are settled already: this is the last), then fail it on failed or skipped rows."""
        ledgers = self._book.open_ledgers(node_id)
        for lg in ledgers:
            self._writer.put_audit(self._book.close(lg, lg.final_status()))
        self._writer.flush()
        for lg in ledgers:
            self._log(summary(lg))
        failed = sum(lg.failed_rows for lg in ledgers if lg.on_error == "fail")
        skipped = sum(lg.skipped_rows for lg in ledgers)
        estimated = sum(lg.est_requests for lg in ledgers)
        if any(lg.dry_run for lg in ledgers) and estimated:
            with self._lock:
                for lg in ledgers:
                    invocation.estimate_total.add(lg)
                self._log(verdict.dry_run_note(node_id, ledgers, materialized, invocation.estimate_total))
            return f"{node_id}: dry run, {estimated} request(s) not sent"
        if skipped:
            with self._lock:
                budget = invocation.model_budgets.get(node_id, invocation.budget)
            raise verdict.budget_error(node_id, budget, skipped)
        if failed:
            query = verdict.errors_query(self._schema(), invocation.id, node_id)
            raise verdict.rows_failed(node_id, failed, query)
        calls = sum(lg.api_calls for lg in ledgers)
        hits = sum(lg.cache_hits for lg in ledgers)
        return f"{node_id}: {calls} API call(s), {hits} cache hit(s)"

    def _settle_now(self, ledger: Ledger, status: Status) -> None:
        self._writer.put_audit(self._book.close(ledger, status))
        self._writer.flush()
        self._log(summary(ledger))
