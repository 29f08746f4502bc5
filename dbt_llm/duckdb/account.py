"""An Account: one audit row's ledger and the lock of everyone who counts into it. Every counter
of the ledger is changed here, once, so a snapshot never shows a value waiting for a correction."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..calls.ledger import Ledger
from ..calls.rows import AUDIT_COLUMNS, AuditRow, Status, now, row_dict
from ..engine import Outcome


@dataclass(frozen=True)
class ChunkCounts:
    """What the missed rows of one resolved chunk came to."""

    missed: int  # rows with text that the cache join missed
    reused: int  # of which answered by a request of another row or model of this run
    failed: int
    skipped: int
    lasting: int = 0  # of failed: inputs a rerun fails again (too long, refused by the provider)


@dataclass
class Fractions:
    """Counts a share of which is estimated, summed unrounded: each addition gives what the rounded total grew by."""

    sums: tuple[float, ...] = ()
    rounded: tuple[int, ...] = ()

    def add(self, *values: float) -> tuple[int, ...]:
        self.sums = tuple(a + b for a, b in zip(self.sums or (0.0,) * len(values), values, strict=True))
        before, self.rounded = self.rounded or (0,) * len(values), tuple(round(v) for v in self.sums)
        return tuple(after - was for after, was in zip(self.rounded, before, strict=True))


@dataclass(eq=False)
class Account:
    """Shared by the live calls of one model with the same function and model (they share a row)."""

    ledger: Ledger
    lock: threading.Lock = field(default_factory=threading.Lock)
    # Rows that neither the cache table nor an earlier answer of this run answered: cache_hits is
    # the rows counted so far less these.
    unanswered: int = 0
    # Missed rows of chunks dbt_llm_resolve holds while their requests run: not cache hits either.
    held: int = 0
    shared: Fractions = field(default_factory=Fractions)  # a dry run's shares of requests and tokens
    # Rows are those counted in SQL (the sequences of its macro calls, read by `reader`: see
    # row_counts.py) and those counted here (count_rows), less the blank ones dbt_llm_resolve saw.
    sequences: list[str] = field(default_factory=list)
    reader: Callable[[list[str]], int] | None = None
    sequenced: int = 0
    blank: int = 0
    counted: int = 0

    # -- rows, from the DuckDB functions --
    def count_rows(self, n: int) -> bool:
        """Rows counted in Python (a preview's by dbt_llm_tally, llm_agg's, a cascade's escalated rows);
        True if the ledger has no audit row yet."""
        with self.lock:
            self.counted += n
            self._cache_hits()
            return not self.ledger.written

    def count_in(self, sequence: str, reader: Callable[[list[str]], int]) -> None:
        """A macro call whose statement counts its rows on `sequence`."""
        with self.lock:
            if sequence not in self.sequences:
                self.sequences.append(sequence)
            self.reader = reader

    def count_blank(self, n: int) -> None:
        """Rows counted in SQL that have no text (NULL or blank): not rows of the audit."""
        if n:
            with self.lock:
                self.blank += n
                self._cache_hits()

    def read_rows(self) -> None:
        """The rows its sequences counted so far (they count as the statement runs, never back)."""
        with self.lock:
            names, reader = list(self.sequences), self.reader
        if reader is None or not names:
            return
        counted = reader(names)
        with self.lock:
            self.sequenced = max(self.sequenced, counted)
            self._cache_hits()

    def ran(self) -> bool:
        """Whether a statement counted rows into it, or it has an audit row already."""
        self.read_rows()
        with self.lock:
            return self.ledger.written or self.sequenced > 0

    def unwritten(self) -> bool:
        with self.lock:
            return not self.ledger.written

    def hold(self, missed: int) -> None:
        """A chunk's missed rows, from when dbt_llm_resolve gets them until count_chunk (or release)."""
        with self.lock:
            self.held += missed
            self._cache_hits()

    def release(self, missed: int) -> None:
        """A held chunk that raised before it was counted."""
        with self.lock:
            self.held = max(self.held - missed, 0)
            self._cache_hits()

    def count_chunk(self, chunk: ChunkCounts, *, fatal: bool) -> None:
        with self.lock:
            lg = self.ledger
            self.held = max(self.held - chunk.missed, 0)
            self.unanswered += chunk.missed - chunk.reused
            lg.reused += chunk.reused
            lg.failed_rows += chunk.failed
            lg.lasting_failures += chunk.lasting
            lg.skipped_rows += chunk.skipped
            self._cache_hits()
            if fatal:
                lg.status, lg.stopped = "error", True

    def count_settled(self, failed: int, skipped: int) -> None:
        """Rows of a microbatch batch answered by its drained requests."""
        with self.lock:
            self.ledger.failed_rows += failed
            self.ledger.skipped_rows += skipped

    def cancel(self) -> None:
        """The run was cancelled while the row was open: it settles as `cancelled`."""
        with self.lock:
            if not self.ledger.closed:
                self.ledger.cancelled = True

    def _cache_hits(self) -> None:
        self.ledger.rows = max(self.counted + self.sequenced - self.blank, 0)
        # The row counter runs ahead of dbt_llm_resolve: rows it holds are not hits.
        self.ledger.cache_hits = max(self.ledger.rows - self.unanswered - self.held, 0)

    # -- requests, from the engine's threads and batch mode --
    def count_queued(self, n: int) -> None:
        with self.lock:
            self.ledger.queued += n

    def count_answered(self, ok: bool = True) -> None:
        with self.lock:
            self.ledger.answered += 1
            self.ledger.failed_texts += not ok

    def count_batch_answer(self) -> None:
        with self.lock:
            self.ledger.batch_answers += 1

    def count_batch_saving(self, usd: float) -> None:
        with self.lock:
            self.ledger.batch_saved_usd += usd

    def spend(self, outcome: Outcome) -> None:
        """What the outcome's requests cost."""
        with self.lock:
            lg = self.ledger
            lg.api_calls += outcome.requests
            lg.sent_rows += outcome.attempts > 0
            lg.retries += outcome.retry_requests
            lg.rate_limited += outcome.rate_limited
            lg.prompt_tokens += outcome.usage.prompt_tokens
            lg.completion_tokens += outcome.usage.completion_tokens
            lg.cached_prompt_tokens += outcome.usage.cached_tokens
            lg.cache_write_tokens += outcome.usage.cache_write_tokens
            if lg.cost_usd is not None:
                lg.cost_usd = None if outcome.cost_usd is None else lg.cost_usd + outcome.cost_usd

    def count_ungrounded(self, n: int) -> None:
        """Values of an answer that its text does not contain, set to NULL where it was checked."""
        if n:
            with self.lock:
                self.ledger.ungrounded_values += n

    def count_compare(self, rows: int, agree: int) -> None:
        """A dry run's compare: sampled rows both specs answered, and how many answers agree."""
        with self.lock:
            self.ledger.compare_rows += rows
            self.ledger.compare_agree += agree

    def count_recheck(self, rows: int, agree: int) -> None:
        """Cached rows asked again that got an answer, and how many of those agree with the cache."""
        with self.lock:
            self.ledger.recheck_rows += rows
            self.ledger.recheck_agree += agree

    def count_confidence(self, confidence: float | None) -> None:
        """An answer's confidence, for the row's mean_confidence (an answer without one is not counted)."""
        if confidence is not None:
            with self.lock:
                self.ledger.confidence_sum += confidence
                self.ledger.confident_rows += 1

    def estimate(self, requests: int, prompt: int, completion: int, cost: float | None, share: float = 1.0) -> None:
        """A dry run: what its requests would send (`cost` None when the model has no price); with a
        share, that share of them (a cascade's guess), its counts rounded over the whole row."""
        with self.lock:
            lg = self.ledger
            if share != 1.0:
                requests, prompt, completion = self.shared.add(requests * share, prompt * share, completion * share)
                cost = None if cost is None else cost * share
            lg.est_requests += requests
            lg.est_prompt_tokens += prompt
            lg.est_completion_tokens += completion
            if lg.est_cost_usd is not None:
                lg.est_cost_usd = None if cost is None else lg.est_cost_usd + cost

    # -- rows for llm_audit and the progress log --
    def snapshot(self) -> AuditRow:
        self.read_rows()
        with self.lock:
            lg = self.ledger
            lg.finished_at, lg.written = now(), True
            if not lg.closed:
                lg.status = "preview" if lg.preview else "running"
            return lg.row()

    def close(self, status: Status) -> AuditRow:
        """Settle the ledger; returns the row to write."""
        self.read_rows()
        with self.lock:
            lg = self.ledger
            lg.status, lg.finished_at, lg.closed, lg.written = status, now(), True, True
            return lg.row()

    def progress(self) -> dict[str, Any]:
        """A consistent copy of the counters the progress log reads."""
        self.read_rows()
        with self.lock:
            lg = self.ledger
            return {
                **row_dict(lg, AUDIT_COLUMNS),
                "reused": lg.reused,
                "queued": lg.queued,
                "answered": lg.answered,
                "failed": lg.failed_texts,
            }
