"""The state of one dbt invocation that no single call owns: the answers it paid for, the keys a dry
run priced, the budgets, the models settled, which call's batch job carries a key. A new
invocation gets a fresh one; the old one is dropped. Each method takes the invocation's lock."""

from __future__ import annotations

import threading
from collections.abc import Iterable

from ..calls.call import Call
from ..calls.ledger import EstimateTotal, Ledger
from ..engine import Budget
from .call_jobs import CallJobs


class Invocation:
    def __init__(self, invocation_id: str, budget: Budget) -> None:
        self.id = invocation_id
        self.budget = budget
        self._lock = threading.Lock()
        # Answers paid for in this invocation: later chunks of a running query cannot see them in the
        # cache table (their snapshot is older), so they are served from here.
        self._answers: dict[str, tuple[str, float | None]] = {}  # key -> (answer, its confidence)
        self._estimated: set[str] = set()  # keys a dry run has already priced
        self._finished: set[str] = set()  # nodes settled by dbt_llm_finish
        self._model_budgets: dict[str, Budget] = {}  # models with a cap of their own
        self._batch_owner: dict[str, CallJobs] = {}  # key -> the jobs of the call that sends it
        self._estimate_total = EstimateTotal()  # a dry run's, over all models
        self._built_by_dry_run: set[str] = set()  # microbatch models whose first batch created the table

    def remember(self, key: str, answer: str, confidence: float | None = None) -> None:
        with self._lock:
            self._answers[key] = (answer, confidence)

    def answer_of(self, key: str) -> tuple[str, float | None] | None:
        with self._lock:
            return self._answers.get(key)

    def unanswered(self, keys: Iterable[str]) -> list[str]:
        with self._lock:
            return [k for k in keys if k not in self._answers]

    def budget_of(self, call: Call) -> Budget:
        """The model's own budget when it sets a cap (one per model and invocation), else the invocation's."""
        if call.max_cost_usd is None:
            return self.budget
        with self._lock:
            if call.node_id not in self._model_budgets:
                self._model_budgets[call.node_id] = Budget(call.max_cost_usd, parent=self.budget)
            return self._model_budgets[call.node_id]

    def node_budget(self, node_id: str) -> Budget:
        with self._lock:
            return self._model_budgets.get(node_id, self.budget)

    def first_estimates(self, keys: list[str]) -> set[str]:
        """The keys no dry run of this invocation priced yet, now marked priced: a key counts once."""
        with self._lock:
            fresh = {k for k in keys if k not in self._estimated}
            self._estimated.update(fresh)
            return fresh

    def finish(self, node_id: str) -> bool:
        """True the first time: dbt adds one post-hook per macro call, and the first settles the model."""
        with self._lock:
            first = node_id not in self._finished
            self._finished.add(node_id)
            return first

    def finished(self, node_id: str) -> bool:
        with self._lock:
            return node_id in self._finished

    def add_estimates(self, ledgers: list[Ledger]) -> EstimateTotal:
        """Add a dry-run model's estimates to the invocation's total; returns a copy of it."""
        with self._lock:
            for lg in ledgers:
                self._estimate_total.add(lg)
            total = self._estimate_total
            return EstimateTotal(total.requests, total.tokens, total.cost_usd, set(total.models))

    def built_by_dry_run(self, node_id: str, *, first_batch_creates: bool = False) -> bool:
        """Whether a dry run's first batch of `node_id` created its table (so the last drops it)."""
        with self._lock:
            if first_batch_creates:
                self._built_by_dry_run.add(node_id)
            return node_id in self._built_by_dry_run

    def batch_owner(self, key: str, jobs: CallJobs) -> CallJobs:
        """The jobs that send `key`: the first call's to ask; a later call waits for them."""
        with self._lock:
            return self._batch_owner.setdefault(key, jobs)
