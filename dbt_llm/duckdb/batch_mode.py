"""Batch mode in a dbt run. A model's uncached texts go to the provider's Batch API as jobs, each
recorded in llm_batch_jobs the moment it exists; the model's first chunk waits for them (up to
`batch_timeout`), and their answers go to the same cache as realtime answers. Jobs a run left
uncollected (it was killed, or stopped waiting) are collected by the next run, never sent again."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from ..batch.lines import BatchOutcome, BatchRecord, Retry
from ..batch.runner import BatchRunner, BatchSettings, exhausted
from ..calls.call import Call
from ..calls.ledger import Ledger
from ..config import LlmConfig
from ..engine import Engine, Outcome, Request
from ..engine.budget import Budget
from ..engine.packing import estimate_tokens, packs_of
from ..errors import BatchPendingError, DbtLlmError
from ..pricing import Price, PriceTable
from ..providers.factory import build_batch_client
from .invocation import CallJobs, Invocation
from .job_store import JobStore
from .recorder import Recorder


class BatchMode:
    def __init__(
        self,
        lock: threading.RLock,
        runner: Callable[[], BatchRunner],
        store: JobStore,
        recorder: Recorder,
        engine: Engine,
        prices: PriceTable,
        *,
        provider: str,
        batch_timeout: float,
        fallback: str,
        max_attempts: int,
        pack_chars: int = 20_000,
        log: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self._lock = lock
        self._runner_factory = runner
        self._runner: BatchRunner | None = None
        self._store = store
        self._recorder = recorder
        self._engine = engine
        self._prices = prices
        self._provider = provider
        self._timeout = batch_timeout
        self._fallback = fallback
        self._max_attempts = max_attempts
        self._pack_chars = pack_chars
        self._log = log

    def price(self, model: str) -> Price | None:
        return self._prices.price(model, batch=True)

    def _run(self) -> BatchRunner:
        with self._lock:
            if self._runner is None:
                self._runner = self._runner_factory()
            return self._runner

    # -- from dbt_llm_submit: every distinct miss of the call, before the first row is resolved --
    def start(self, call: Call, invocation: Invocation, ledger: Ledger, requests: list[Request]) -> None:
        """Collect keys that sit in a job no run collected; send the rest, within the budget, as new jobs."""
        with self._lock:
            jobs = invocation.batch_jobs.setdefault(call.handle, CallJobs())
        with jobs.lock:
            requests = [r for r in requests if r.key not in jobs.requests and r.key not in jobs.borrowed]
            with self._lock:  # a key another model of this run sends in a job is waited for, not sent twice
                for request in requests:
                    owner = invocation.batch_owner.setdefault(request.key, call.handle)
                    if owner != call.handle:
                        jobs.borrowed[request.key] = owner
            requests = [r for r in requests if r.key not in jobs.borrowed]
            if not requests:
                return
            jobs.requests.update((r.key, r) for r in requests)
            earlier = self._store.open_jobs([r.key for r in requests], self._provider)
            covered = {key for record in earlier for key in record.keys}
            jobs.records += earlier
            fresh = [r for r in requests if r.key not in covered]
            sendable = self._reserve(call, invocation, ledger, jobs, fresh)
            if sendable:
                created = self._recorder_of_jobs(call)
                jobs.records += self._run().submit(sendable, created, metadata={"dbt_node": call.node_id[:500]})
            waiting = ", ".join(f"{r.batch_id} ({len(r.keys)} requests)" for r in jobs.records)
            self._log(
                f"{call.where} llm_{call.task.function}: batch job(s) {waiting} recorded in llm_batch_jobs; "
                f"waiting up to batch_timeout={self._timeout:g}s"
            )

    def _reserve(
        self, call: Call, invocation: Invocation, ledger: Ledger, jobs: CallJobs, requests: list[Request]
    ) -> list[Request]:
        """A job is paid when it ends, so its estimated cost is held against the budget up front, a
        pack's shared by its rows; a request that does not fit is not sent (`budget`)."""
        price = self.price(call.task.model)
        sendable: list[Request] = []
        for pack in packs_of(requests, lambda request: request, self._pack_chars):
            estimate = 0.0 if price is None else price.cost(*estimate_tokens(pack))
            if pack[0].budget.reserve(estimate) == "reserved":
                jobs.reserved.update((request.key, estimate / len(pack)) for request in pack)
                sendable += pack
                continue
            for request in pack:  # "wait" too: nothing in this call settles before the job ends
                outcome = Outcome(request.key, error_kind="budget", error="not sent: max_cost_usd was reached")
                jobs.outcomes[request.key] = outcome
                self._recorder.record(call, invocation, ledger, outcome, {})
        return sendable

    # -- from the call's first dbt_llm_resolve that has misses --
    def collect(self, call: Call, invocation: Invocation, ledger: Ledger) -> None:
        """Wait for the call's jobs (up to batch_timeout) and record every outcome; lines without a
        valid answer are retried realtime or by a follow-up job (`batch_fallback`). Jobs still
        running at the deadline fail the statement, so no NULL is committed for their rows."""
        with self._lock:
            jobs = invocation.batch_jobs.get(call.handle)
        if jobs is None:
            return
        with jobs.lock:
            if jobs.pending_error is not None:
                raise jobs.pending_error
            if jobs.collected:
                return
            deadline = time.monotonic() + self._timeout
            try:
                self._collect_own(call, invocation, ledger, jobs, deadline)
            except DbtLlmError as exc:
                jobs.pending_error = exc
                raise
            finally:
                jobs.done.set()
            self._borrow(call, invocation, jobs, deadline)
            jobs.collected = True

    def _collect_own(self, call: Call, invocation: Invocation, ledger: Ledger, jobs: CallJobs, deadline: float) -> None:
        texts = {key: request.text for key, request in jobs.requests.items()}
        runner = self._run()
        records, earlier = list(jobs.records), dict[str, Retry]()
        while records:
            result = runner.collect(
                records,
                jobs.requests,
                deadline=deadline,
                on_outcome=lambda outcome: self._settled(call, invocation, ledger, jobs, outcome, texts),
                earlier=earlier,
            )
            for record in result.finished:
                ok = sum(1 for key in record.keys if key in invocation.answers)
                self._store.finished(record, completed=ok, failed=len(record.keys) - ok)
            if result.pending:
                for record in result.pending:
                    self._store.waiting(record)
                raise self._pending_error(call, result.pending)
            records, earlier = self._retry(call, invocation, ledger, jobs, result.retry, deadline, texts)

    def _borrow(self, call: Call, invocation: Invocation, jobs: CallJobs, deadline: float) -> None:
        """Keys another model of this run sends in its job: wait for that model to collect it; their
        outcomes come back shared (paid, and counted, by the model that sent them)."""
        with self._lock:
            owners = {owner: invocation.batch_jobs[owner] for owner in set(jobs.borrowed.values())}
        for owner in owners.values():
            owner.done.wait(max(0.0, deadline - time.monotonic()))
            if owner.pending_error is not None or not owner.done.is_set():
                raise BatchPendingError(
                    f"dbt_llm: {call.where} waits for texts another model of this run sent in a batch job that "
                    f"has not ended: {owner.pending_error or 'still collecting at batch_timeout'}"
                )
        for key, owner_handle in jobs.borrowed.items():
            outcome = owners[owner_handle].final.get(key)
            if outcome is not None:
                jobs.outcomes[key] = outcome.as_shared()

    def _retry(
        self,
        call: Call,
        invocation: Invocation,
        ledger: Ledger,
        jobs: CallJobs,
        retries: list[Retry],
        deadline: float,
        texts: dict[str, str],
    ) -> tuple[list[BatchRecord], dict[str, Retry]]:
        """Lines without a valid answer: realtime now (`batch_fallback: realtime`), or one more job while
        the key has attempts and the run has time left; a key with neither fails with its last error."""
        if not retries:
            return [], {}
        if self._fallback == "realtime":
            for retry in retries:  # what its batch lines cost is spent, whatever the realtime answer
                self._recorder.spend(ledger, retry.so_far)
                self._release(retry.request, jobs, cost=retry.so_far.cost_usd or 0.0)
            self._realtime(call, invocation, ledger, jobs, [r.request for r in retries], texts)
            return [], {}
        again: list[Retry] = []
        for retry in retries:
            if retry.so_far.attempts < self._max_attempts and time.monotonic() < deadline:
                again.append(retry)
            else:
                self._settled(call, invocation, ledger, jobs, exhausted(retry), texts)
        if not again:
            return [], {}
        earlier = {retry.request.key: retry for retry in again}
        created = self._recorder_of_jobs(call)
        return self._run().submit([retry.request for retry in again], created, earlier=earlier), earlier

    def _recorder_of_jobs(self, call: Call) -> Callable[[BatchRecord], None]:
        def created(record: BatchRecord) -> None:
            self._store.created(
                record,
                provider=self._provider,
                model=call.task.model,
                function=call.task.function,
                invocation_id=call.invocation_id,
                node_id=call.node_id,
            )

        return created

    def _realtime(
        self,
        call: Call,
        invocation: Invocation,
        ledger: Ledger,
        jobs: CallJobs,
        requests: list[Request],
        texts: dict[str, str],
    ) -> None:
        def on_outcome(outcome: Outcome) -> None:
            self._recorder.record(call, invocation, ledger, outcome, texts)

        for outcome in self._engine.wait(self._engine.submit(requests, on_outcome)):
            jobs.outcomes[outcome.key] = jobs.final[outcome.key] = outcome

    def _settled(
        self,
        call: Call,
        invocation: Invocation,
        ledger: Ledger,
        jobs: CallJobs,
        outcome: Outcome,
        texts: dict[str, str],
    ) -> None:
        """A final outcome of a batch line: recorded as it arrives, held for the row that claims it."""
        request = jobs.requests[outcome.key]
        self._release(request, jobs, cost=outcome.cost_usd or 0.0)
        with self._lock:
            if outcome.ok and isinstance(outcome, BatchOutcome):
                ledger.batch_answers += 1
        self._recorder.record(call, invocation, ledger, outcome, texts)
        jobs.outcomes[outcome.key] = jobs.final[outcome.key] = outcome

    def _release(self, request: Request, jobs: CallJobs, cost: float) -> None:
        reserved = jobs.reserved.pop(request.key, None)
        if reserved is not None:
            budget: Budget = request.budget
            budget.settle(reserved, cost)

    def _pending_error(self, call: Call, pending: list[BatchRecord]) -> BatchPendingError:
        ids = ", ".join(record.batch_id for record in pending)
        waiting = sum(len(record.keys) for record in pending)
        return BatchPendingError(
            f"dbt_llm: {call.where} waited batch_timeout={self._timeout:g}s for batch job(s) {ids} "
            f"({waiting} request(s)), which have not ended; nothing was written for this model. The jobs are "
            "recorded in llm_batch_jobs: the next run collects them and sends none of their requests again. "
            "Run it later, or raise batch_timeout."
        )


def build_batch_mode(
    config: LlmConfig,
    lock: threading.RLock,
    store: JobStore,
    recorder: Recorder,
    engine: Engine,
    log: Callable[[str], None],
) -> BatchMode:
    prices = PriceTable(config.prices)

    def runner() -> BatchRunner:  # built on the first job: a realtime run needs no Batch API client
        return BatchRunner(
            build_batch_client(config),
            prices=prices,
            settings=BatchSettings(poll_initial=config.batch_poll_interval, pack_chars=config.max_input_chars),
        )

    return BatchMode(
        lock,
        runner,
        store,
        recorder,
        engine,
        prices,
        provider=config.provider,
        batch_timeout=config.batch_timeout,
        fallback=config.batch_fallback,
        max_attempts=config.max_attempts,
        pack_chars=config.max_input_chars,
        log=log,
    )
