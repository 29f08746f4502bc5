"""Batch mode in a dbt run. A model's uncached texts go to the provider's Batch API as jobs, each
recorded in llm_batch_jobs the moment it exists; the model's first chunk waits for them (up to
`batch_timeout`), and their answers go to the same cache as realtime answers. Jobs a run left
uncollected (it was killed, or stopped waiting) are collected by the next run, never sent again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..batch.lines import BatchOutcome, BatchRecord, CollectResult
from ..batch.reserve import reserve_jobs
from ..batch.runner import BatchRunner, RunHooks, exhausted
from ..batch.wiring import pending_error, runner_for
from ..config import LlmConfig
from ..engine import Outcome, Request
from ..errors import BatchPendingError, DbtLlmError
from ..pricing import Price, PriceTable
from .call_jobs import CallJobs
from .job_store import JobStore
from .live_call import LiveCall

# The sender's realtime path: sends the requests of a live call and waits for their outcomes.
Realtime = Callable[[LiveCall, list[Request]], list[Outcome]]


class BatchMode:
    def __init__(self, config: LlmConfig, store: JobStore, log: Callable[[str], None] = lambda _message: None) -> None:
        self._config = config
        self._prices = PriceTable(config.prices)
        self._store = store
        self._log = log
        self._lock = threading.Lock()  # guards the runner, built on the first job
        self._runner: BatchRunner | None = None

    def price(self, model: str) -> Price | None:
        return self._prices.price(model, batch=True)

    def _run(self) -> BatchRunner:
        """Built on the first job: a realtime run needs no Batch API client."""
        with self._lock:
            if self._runner is None:
                self._runner = runner_for(self._config, self._prices)
            return self._runner

    # -- from dbt_llm_submit: every distinct miss of the call, before the first row is resolved --
    def start(self, live: LiveCall, requests: list[Request]) -> None:
        """Collect keys that sit in a job no run collected; send the rest, within the budget, as new jobs."""
        call, jobs = live.call, live.jobs()
        with jobs.lock:
            requests = [r for r in requests if not jobs.covers(r.key)]
            for request in requests:  # a key another model of this run sends in a job is waited for, not sent twice
                owner = live.invocation.batch_owner(request.key, jobs)
                if owner is not jobs:
                    jobs.borrowed[request.key] = owner
            requests = [r for r in requests if r.key not in jobs.borrowed]
            if not requests:
                return
            jobs.requests.update((r.key, r) for r in requests)
            earlier = self._store.open_jobs([r.key for r in requests], self._config.provider)
            covered = {key for record in earlier for key in record.keys}
            jobs.records += earlier
            sendable = self._reserve(live, jobs, [r for r in requests if r.key not in covered])
            if sendable:
                jobs.records += self._run().submit(
                    sendable, self._recorder_of_jobs(live), metadata=self._metadata(live)
                )
            waiting = ", ".join(f"{r.batch_id} ({len(r.keys)} requests)" for r in jobs.records)
            self._log(
                f"{call.where} llm_{call.task.function}: batch job(s) {waiting} recorded in llm_batch_jobs; "
                f"waiting up to batch_timeout={self._config.batch_timeout:g}s"
            )

    def _reserve(self, live: LiveCall, jobs: CallJobs, requests: list[Request]) -> list[Request]:
        """Each job's estimated cost is held against the budget up front (batch/reserve.py); a request
        that does not fit is not sent (`budget`)."""
        before = len(jobs.held.sendable)
        reserve_jobs(requests, self.price(live.call.task.model), self._config.max_input_chars, jobs.held)
        for request in jobs.held.refused:
            outcome = Outcome(request.key, error_kind="budget", error="not sent: max_cost_usd was reached")
            jobs.outcomes[request.key] = outcome
            live.record(outcome)
        jobs.held.refused.clear()
        return jobs.held.sendable[before:]

    # -- from the call's first dbt_llm_resolve that has misses --
    def collect(self, live: LiveCall, realtime: Realtime) -> None:
        """Wait for the call's jobs (up to batch_timeout) and record every outcome; lines without a
        valid answer are retried realtime or by a follow-up job (`batch_fallback`). Jobs still
        running at the deadline fail the statement, so no NULL is committed for their rows."""
        jobs = live.started_jobs()
        if jobs is None:
            return
        with jobs.lock:
            if jobs.pending_error is not None:
                raise jobs.pending_error
            if jobs.collected:
                return
            deadline = time.monotonic() + self._config.batch_timeout
            try:
                self._collect_own(live, jobs, deadline, realtime)
            except DbtLlmError as exc:
                jobs.pending_error = exc
                raise
            finally:
                jobs.done.set()
            self._borrow(live, jobs, deadline)
            jobs.collected = True

    def _collect_own(self, live: LiveCall, jobs: CallJobs, deadline: float, realtime: Realtime) -> None:
        """BatchRunner.follow over the call's jobs; keys still to retry when the deadline passed fail
        with their last error."""
        realtime_fallback = self._config.batch_fallback == "realtime"
        hooks = RunHooks(
            on_created=self._recorder_of_jobs(live),
            on_outcome=lambda outcome: self._settled(live, jobs, outcome),
            fallback=(lambda requests: self._realtime(live, jobs, requests, realtime)) if realtime_fallback else None,
            on_round=lambda collected: self._round(live, jobs, collected),
        )
        result = self._run().follow(
            list(jobs.records),
            jobs.requests,
            deadline=deadline,
            max_attempts=self._config.max_attempts,
            hooks=hooks,
            metadata=self._metadata(live),
        )
        for retry in result.retry:
            self._settled(live, jobs, exhausted(retry))

    def _round(self, live: LiveCall, jobs: CallJobs, collected: CollectResult) -> None:
        """Jobs that ended are marked so in llm_batch_jobs; one still running stops the statement.
        Lines handed to the realtime path keep what their batch lines cost, whatever the answer."""
        for record in collected.finished:
            unanswered = len(live.invocation.unanswered(record.keys))
            self._store.finished(record, completed=len(record.keys) - unanswered, failed=unanswered)
        if collected.pending:
            for record in collected.pending:
                self._store.waiting(record)
            raise self._pending_error(live, collected.pending)
        if self._config.batch_fallback == "realtime":
            for retry in collected.retry:
                live.account.spend(retry.so_far)
                live.account.count_batch_saving(self._saved(live.call.task.model, retry.so_far))
                self._release(retry.request, jobs, cost=retry.so_far.cost_usd or 0.0)

    def _borrow(self, live: LiveCall, jobs: CallJobs, deadline: float) -> None:
        """Keys another model of this run sends in its job: wait for that model to collect it; their
        outcomes come back shared (paid, and counted, by the model that sent them)."""
        for owner in set(jobs.borrowed.values()):
            owner.done.wait(max(0.0, deadline - time.monotonic()))
            if owner.pending_error is not None or not owner.done.is_set():
                raise BatchPendingError(
                    f"dbt_llm: {live.call.where} waits for texts another model of this run sent in a batch job "
                    f"that has not ended: {owner.pending_error or 'still collecting at batch_timeout'}"
                )
        for key, owner in jobs.borrowed.items():
            outcome = owner.final.get(key)
            if outcome is not None:
                jobs.outcomes[key] = outcome.as_shared()

    def _metadata(self, live: LiveCall) -> dict[str, str]:
        return {"dbt_node": live.call.node_id[:500]}

    def _recorder_of_jobs(self, live: LiveCall) -> Callable[[BatchRecord], None]:
        call = live.call

        def created(record: BatchRecord) -> None:
            self._store.created(
                record,
                provider=self._config.provider,
                model=call.task.model,
                function=call.task.function,
                invocation_id=call.invocation_id,
                node_id=call.node_id,
            )

        return created

    def _realtime(self, live: LiveCall, jobs: CallJobs, requests: list[Request], realtime: Realtime) -> None:
        for outcome in realtime(live, requests):
            jobs.outcomes[outcome.key] = jobs.final[outcome.key] = outcome

    def _settled(self, live: LiveCall, jobs: CallJobs, outcome: Outcome) -> None:
        """A final outcome of a batch line: recorded as it arrives, held for the row that claims it."""
        request = jobs.requests[outcome.key]
        self._release(request, jobs, cost=outcome.cost_usd or 0.0)
        if isinstance(outcome, BatchOutcome):
            live.account.count_batch_saving(self._saved(live.call.task.model, outcome))
            if outcome.ok:
                live.account.count_batch_answer()
        live.record(outcome)
        jobs.outcomes[outcome.key] = jobs.final[outcome.key] = outcome

    def _saved(self, model: str, outcome: Outcome) -> float:
        """What a batch line's tokens cost at list price less what they cost: every line is billed."""
        price = self._prices.price(model)
        if price is None or outcome.cost_usd is None:
            return 0.0
        usage = outcome.usage
        return price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens) - outcome.cost_usd

    def _release(self, request: Request, jobs: CallJobs, cost: float) -> None:
        jobs.held.release(request, cost)

    def _pending_error(self, live: LiveCall, pending: list[BatchRecord]) -> BatchPendingError:
        return pending_error(live.call.where, self._config.batch_timeout, pending)
