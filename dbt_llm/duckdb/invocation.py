"""The state of one dbt invocation: its prepared calls, budget, the answers it paid for and the
requests it has pending or failed. A new invocation gets a fresh one; the old one is dropped."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..batch.lines import BatchRecord
from ..calls.call import Call
from ..calls.ledger import EstimateTotal
from ..engine import Budget, Outcome, Pending, Request
from ..errors import DbtLlmError


@dataclass
class CallJobs:
    """The batch jobs of one call, the requests they answer, and the outcomes no row claimed yet."""

    records: list[BatchRecord] = field(default_factory=list)
    requests: dict[str, Request] = field(default_factory=dict)
    reserved: dict[str, float] = field(default_factory=dict)  # estimated cost held against the budget
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # not claimed by a row yet
    final: dict[str, Outcome] = field(default_factory=dict)  # every final outcome, for calls that borrow it
    borrowed: dict[str, str] = field(default_factory=dict)  # key -> the call whose job carries it
    collected: bool = False
    pending_error: DbtLlmError | None = None  # the jobs outlived batch_timeout
    done: threading.Event = field(default_factory=threading.Event)  # collected, or given up
    lock: threading.Lock = field(default_factory=threading.Lock)


@dataclass
class ChunkAnswers:
    results: list[str | None] = field(default_factory=list)
    reused: int = 0  # rows answered by a request of another row or model of this run
    failed: int = 0
    skipped: int = 0
    shared_failures: list[Outcome] = field(default_factory=list)


@dataclass
class Invocation:
    id: str
    budget: Budget
    calls: dict[str, Call] = field(default_factory=dict)
    # Answers paid for in this invocation: later chunks of a running query cannot see them in the
    # cache table (their snapshot is older), so they are served from here.
    answers: dict[str, str] = field(default_factory=dict)
    estimated: set[str] = field(default_factory=set)  # keys a dry run has already priced
    # Requests dbt_llm_submit queued, until a row of resolve claims them; failures then stay for the
    # rest of the invocation, so a text that failed is not paid for again in the same call.
    pending: dict[tuple[str, str], Pending] = field(default_factory=dict)
    failed: dict[tuple[str, str], Outcome] = field(default_factory=dict)
    resolves: dict[str, int] = field(default_factory=dict)  # dbt_llm_resolve calls per call handle
    finished: set[str] = field(default_factory=set)  # nodes settled by dbt_llm_finish
    model_budgets: dict[str, Budget] = field(default_factory=dict)  # models with a cap of their own
    batch_jobs: dict[str, CallJobs] = field(default_factory=dict)  # batch mode: per call handle
    batch_owner: dict[str, str] = field(default_factory=dict)  # key -> the call that sends it in a job
    estimate_total: EstimateTotal = field(default_factory=EstimateTotal)  # a dry run's, over all models

    def answer_rows(self, call: Call, miss_keys: list[str | None], outcomes: dict[str, Outcome]) -> ChunkAnswers:
        """The answer of each missed row of a chunk (the caller holds the runtime's lock). A key's first
        row takes the outcome of its request; later rows, and keys answered earlier, are reused."""
        chunk = ChunkAnswers()
        self.failed.update(((call.handle, o.key), o) for o in outcomes.values() if not o.ok)
        for key in miss_keys:
            if key is None:
                chunk.results.append(None)
                continue
            outcome = outcomes.pop(key) if key in outcomes else None
            if outcome is not None and outcome.shared and not outcome.ok and outcome.error_kind != "budget":
                chunk.shared_failures.append(outcome)  # the request was another model's: record it here too
            if outcome is None:
                outcome = self.failed.get((call.handle, key))
            if outcome is None and key in self.answers:
                chunk.results.append(self.answers[key])  # answered earlier in this invocation
                chunk.reused += 1
                continue
            chunk.results.append(outcome.result if outcome else None)
            if outcome is None:
                chunk.skipped += not call.dry_run  # not sent: a dry run, or the budget stopped it
            elif outcome.error_kind == "budget":
                chunk.skipped += 1
            elif not outcome.ok:
                chunk.failed += 1
            elif outcome.shared:
                chunk.reused += 1
        return chunk

    def budget_of(self, call: Call) -> Budget:
        """The model's own budget when it sets a cap (one per model and invocation), else the invocation's."""
        if call.max_cost_usd is None:
            return self.budget
        if call.node_id not in self.model_budgets:
            self.model_budgets[call.node_id] = Budget(call.max_cost_usd, parent=self.budget)
        return self.model_budgets[call.node_id]

    def claim_batch_outcomes(self, call: Call, keys: list[str]) -> dict[str, Outcome]:
        """Batch mode: the outcomes of these keys that no row claimed yet (the caller holds the lock)."""
        jobs = self.batch_jobs.get(call.handle)
        if jobs is None:
            return {}
        return {key: jobs.outcomes.pop(key) for key in keys if key in jobs.outcomes}

    def pending_of(self, handle: str) -> list[Pending]:
        """Take every request still pending for one call (the caller must hold the runtime's lock)."""
        keys = [k for k in self.pending if k[0] == handle]
        return [self.pending.pop(k) for k in keys]
