"""A Ledger: the live counters of one llm_audit row, the status it settles on, and the log lines
that summarise it. It counts; it neither sends requests nor writes tables."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..config import OnError
from .rows import AUDIT_COLUMNS, AuditRow, Status

LedgerKey = tuple[str, str, str, str, str]  # invocation, node, batch, function, model


@dataclass
class Ledger(AuditRow):
    """The live counters of one llm_audit row, and what the runtime needs to settle it."""

    on_error: OnError = "fail"
    dry_run: bool = False
    # The command runs the post-hook that settles the row (Call.hooked); False: a preview, such as `dbt show`.
    hooked: bool = False
    reused: int = 0  # of cache_hits: rows answered by an earlier row of this run, not by the cache table
    queued: int = 0  # requests handed to the engine, for progress
    answered: int = 0  # of which answered or failed
    lasting_failures: int = 0  # of failed_rows: inputs a rerun fails again (too long, refused)
    failed_texts: int = 0  # of which without an answer (failed, or left by the budget), for progress
    sent_rows: int = 0  # rows answered (or failed) by this ledger's own requests, packed or not
    written: bool = False  # a row exists in llm_audit
    closed: bool = False  # settled: its status is final
    stopped: bool = False  # the call was stopped by an error that is no row's own (a missing key, no provider)
    cancelled: bool = False  # Ctrl-C or SIGTERM stopped the run while the row was open
    confidence_sum: float = 0.0  # of the answers with a confidence, for mean_confidence
    confident_rows: int = 0

    @property
    def key(self) -> LedgerKey:
        return (self.invocation_id, self.node_id, self.batch_id, self.function, self.model)

    @property
    def preview(self) -> bool:
        return not self.hooked

    def row(self) -> AuditRow:
        """A copy of the audit columns (take it under the book's lock)."""
        self.rows_per_call = round(self.sent_rows / self.api_calls, 2) if self.api_calls else None
        self.mean_confidence = self.confidence_sum / self.confident_rows if self.confident_rows else None
        return AuditRow(**{column: getattr(self, column) for column in AUDIT_COLUMNS})

    def final_status(self, *, node_failed: bool = False) -> Status:
        """The status when the statement has ended: previews and dry runs say so; a model whose
        statement failed before its post-hook, or was stopped by an error that is not its rows', is
        `error`; otherwise what the rows came to."""
        if self.dry_run:
            return "dry_run"
        if self.preview:
            return "preview"
        if self.cancelled:
            return "cancelled"
        if self.stopped:
            return "error"
        if self.skipped_rows:
            return "budget_exceeded"
        if self.failed_rows:
            return "failed_rows"
        return "error" if node_failed else "success"


@dataclass
class EstimateTotal:
    """What a dry run would send, over every model estimated so far in the invocation."""

    requests: int = 0
    tokens: int = 0
    cost_usd: float | None = 0.0
    models: set[str] = field(default_factory=set)

    def add(self, lg: Ledger) -> None:
        self.requests += lg.est_requests
        self.tokens += lg.est_prompt_tokens + lg.est_completion_tokens
        if self.cost_usd is not None:
            self.cost_usd = None if lg.est_cost_usd is None else self.cost_usd + lg.est_cost_usd
        self.models.add(lg.node_id)

    def text(self) -> str:
        return (
            f"{self.requests} request(s), ~{self.tokens} tokens, ~{usd(self.cost_usd)} over {len(self.models)} model(s)"
        )


def usd(value: float | None) -> str:
    return "unknown USD (no price for this model)" if value is None else f"${value:.4f}"


def estimate_text(lg: Ledger) -> str:
    tokens = lg.est_prompt_tokens + lg.est_completion_tokens
    return f"llm_{lg.function} ({lg.model}): {lg.est_requests} request(s), ~{tokens} tokens, ~{usd(lg.est_cost_usd)}"


def where_batch(lg: Ledger) -> str:
    return f"batch {lg.batch_id} of {lg.node_id}" if lg.batch_id else lg.node_id


def summary(lg: Ledger) -> str:
    if lg.status == "dry_run":
        return f"dry run: {where_batch(lg)}: {estimate_text(lg)}; {lg.cache_hits} of {lg.rows} rows cached"
    cached = lg.cache_hits - lg.reused
    return (
        f"{where_batch(lg)} llm_{lg.function} ({lg.model}): {lg.rows} rows, {cached} cached, "
        f"{lg.reused} reused (same text earlier in this run), {lg.api_calls} API calls ({lg.retries} retries), "
        f"{lg.failed_rows} failed, {lg.prompt_tokens + lg.completion_tokens} tokens, {usd(lg.cost_usd)}"
        + (f", {lg.ungrounded_values} invented values set to NULL" if lg.ungrounded_values else "")
        + (f", recheck {lg.recheck_agree}/{lg.recheck_rows} agree" if lg.recheck_rows else "")
        + (f", golden {lg.golden_correct:g}/{lg.golden_rows} right" if lg.golden_rows else "")
        + (" [preview]" if lg.status == "preview" else "")
    )
