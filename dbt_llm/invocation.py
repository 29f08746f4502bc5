"""The state of one dbt invocation: its prepared calls, budget, the answers it paid for and the
requests it has pending or failed. A new invocation gets a fresh one; the old one is dropped."""

from __future__ import annotations

from dataclasses import dataclass, field

from .audit import EstimateTotal
from .engine import Budget, Outcome, Pending
from .tasks import Task


@dataclass(frozen=True)
class Call:
    """One macro call in one model (one microbatch batch, for those) of one invocation."""

    handle: str
    task: Task
    invocation_id: str
    node_id: str
    batch_id: str = ""
    command: str = "run"
    on_error: str = "fail"
    dry_run: bool = False

    @property
    def where(self) -> str:
        return f"batch {self.batch_id} of {self.node_id}" if self.batch_id else self.node_id


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
    estimate_total: EstimateTotal = field(default_factory=EstimateTotal)  # a dry run's, over all models

    def pending_of(self, handle: str) -> list[Pending]:
        """Take every request still pending for one call (the caller must hold the runtime's lock)."""
        keys = [k for k in self.pending if k[0] == handle]
        return [self.pending.pop(k) for k in keys]
