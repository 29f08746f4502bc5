"""Settles audit rows: at a model's post-hook (and fails the model if its rows say so), when a
microbatch batch fails on its own rows, when dbt says a node ended, when a new invocation starts.
A settled row's status is final and written before anyone is told."""

from __future__ import annotations

from collections.abc import Callable

from ..calls import verdict
from ..calls.ledger import summary
from ..calls.rows import Status
from ..engine import Outcome
from ..errors import DbtLlmError
from .account import Account
from .audit_book import AuditBook
from .invocation import Invocation
from .live_call import LiveCall
from .writer import Writer


class Settler:
    def __init__(
        self, book: AuditBook, writer: Writer, log: Callable[[str], None], schema: Callable[[], str | None]
    ) -> None:
        self._book = book
        self._writer = writer
        self._log = log
        self._schema = schema

    def close_accounts(self, accounts: list[Account], *, node_failed: bool) -> None:
        """Settle the rows that exist (one whose statement never ran has none to settle)."""
        written = [a for a in accounts if a.ran()]
        for account in written:
            self._writer.put_audit(account.close(account.ledger.final_status(node_failed=node_failed)))
        if written:
            self._writer.flush()

    def node_finished(self, node_id: str, failed: bool) -> None:
        """dbt's NodeFinished: a post-hook already settled a model that ran it; this settles previews,
        models whose SQL failed, and each microbatch batch (the batches of an LLM model run one after
        another, see _llm_prepare)."""
        accounts = self._book.open_accounts(node_id)
        self.close_accounts(accounts, node_failed=failed)
        for account in accounts:
            if account.ledger.written:
                self._log(summary(account.ledger))

    def fail_batch(self, live: LiveCall, drained: list[Outcome]) -> DbtLlmError:
        """A microbatch batch fails on its own rows, in its own statement (dbt runs the post-hook only
        after the last batch), once every text it queued was answered (`drained`): all its failures are
        recorded and every answer it paid for is cached."""
        failed, skipped, lasting = live.settle_drained(drained)
        status: Status = "budget_exceeded" if skipped else "failed_rows"
        self._settle_now(live.account, status)
        call = live.call
        if skipped:
            return verdict.budget_error(call.where, live.budget, skipped, batch=True)
        query = verdict.errors_query(self._schema(), call.invocation_id, call.node_id)
        return verdict.batch_failed(call.where, failed, query, lasting=lasting)

    def finish_model(self, invocation: Invocation, node_id: str, materialized: str) -> str:
        """The model's post-hook: settle its open rows (batches of a microbatch model that failed or
        finished are settled already: this is the last), then fail it on failed or skipped rows."""
        accounts = self._book.open_accounts(node_id)
        for account in accounts:
            self._writer.put_audit(account.close(account.ledger.final_status()))
        self._writer.flush()
        ledgers = [account.ledger for account in accounts]
        for lg in ledgers:
            self._log(summary(lg))
        failed = sum(lg.failed_rows for lg in ledgers if lg.on_error == "fail")
        skipped = sum(lg.skipped_rows for lg in ledgers)
        # A dry run counts every batch of a microbatch model (the earlier ones settled as they ended).
        priced = [a.ledger for a in self._book.accounts_of(invocation.id, node_id) if a.ledger.dry_run]
        estimated = sum(lg.est_requests for lg in priced)
        if priced and estimated:
            total = invocation.add_estimates(priced)
            created = invocation.built_by_dry_run(node_id)
            self._log(verdict.dry_run_note(node_id, priced, materialized, total, created=created))
            return f"{node_id}: dry run, {estimated} request(s) not sent"
        if skipped:
            raise verdict.budget_error(node_id, invocation.node_budget(node_id), skipped)
        if failed:
            query = verdict.errors_query(self._schema(), invocation.id, node_id)
            judged = [lg for lg in ledgers if lg.on_error == "fail" and lg.failed_rows]
            lasting = sum(lg.lasting_failures for lg in judged)
            by_function: dict[str, int] = {}
            for lg in judged:
                by_function[lg.function] = by_function.get(lg.function, 0) + lg.failed_rows
            raise verdict.rows_failed(node_id, failed, query, lasting=lasting, by_function=by_function)
        calls = sum(lg.api_calls for lg in ledgers)
        hits = sum(lg.cache_hits for lg in ledgers)
        return f"{node_id}: {calls} API call(s), {hits} cache hit(s)"

    def _settle_now(self, account: Account, status: Status) -> None:
        self._writer.put_audit(account.close(status))
        self._writer.flush()
        self._log(summary(account.ledger))
