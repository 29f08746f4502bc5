"""A LiveCall: one macro call in flight in the current invocation. It owns what belongs to the call
(the texts it has seen by key, its pending requests, its failures, its resolve count, its batch
jobs) under its own lock, and counts into its audit row through the row's account.

Locks are taken in one order: a call's jobs, then the call, then its account or the invocation."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..calls.call import Call
from ..calls.ledger import Ledger
from ..engine import Budget, Outcome, Pending
from ..errors import InternalStateError
from .account import Account, ChunkCounts
from .call_jobs import CallJobs
from .invocation import Invocation
from .recorder import Recorder
from .sample import Sample
from .writer import Writer

# Failures a rerun meets again, unless the input or the settings change.
LASTING_ERRORS: frozenset[str | None] = frozenset({"input_too_long", "bad_request"})


@dataclass
class ChunkAnswers:
    results: list[str | None] = field(default_factory=list)
    reused: int = 0  # rows answered by a request of another row or model of this run
    failed: int = 0
    skipped: int = 0
    lasting: int = 0  # of failed: inputs a rerun fails again
    shared_failures: list[Outcome] = field(default_factory=list)
    cancelled: int = 0  # rows the run was cancelled before (Ctrl-C, SIGTERM): neither failed nor skipped


_UNSENT = ("budget", "cancelled")  # kinds of rows the run did not try to the end: no llm_errors row


class LiveCall:
    def __init__(self, call: Call, invocation: Invocation, account: Account, writer: Writer) -> None:
        self.call = call
        self.invocation = invocation
        self.account = account
        self._recorder = Recorder(call, account, invocation, writer)
        self._lock = threading.Lock()
        self._texts: dict[str, str] = {}
        # Requests dbt_llm_submit queued, until a row of resolve claims them; failures then stay for the
        # rest of the invocation, so a text that failed is not paid for again in the same call.
        self._pending: dict[str, Pending] = {}
        self._failed: dict[str, Outcome] = {}
        self._resolves = 0
        self._jobs: CallJobs | None = None
        # The texts the cache join missed, as dbt_llm_submit saw them, by the text as the row has it
        # (what dbt_llm_resolve gets: _llm_resolve_sql): the key and the text sent, None when blank.
        self._missed: dict[str, tuple[str, str] | None] = {}
        # The cached rows a recheck asks again (dbt_llm_sample offers each one the call reads).
        self.sample = Sample(call.recheck, seed=call.handle) if call.recheck else None
        # A dry run's compare: the rows the new spec will answer (dbt_llm_compare), from those it priced.
        self.compared = Sample(call.compare, seed=call.handle + "\ncompare") if call.compare else None
        # A dry run prices this share of its requests: a cascade's escalate_to guessing its rows (cascade_dry.py).
        self.estimate_share = 1.0

    @property
    def handle(self) -> str:
        return self.call.handle

    @property
    def ledger(self) -> Ledger:
        return self.account.ledger

    @property
    def budget(self) -> Budget:
        return self.invocation.budget_of(self.call)

    # -- the rows the cache join missed --
    def note_missed(self, raws: list[str | None], keys: list[str | None], texts: list[str | None]) -> None:
        with self._lock:
            for raw, key, text in zip(raws, keys, texts, strict=True):
                if raw is not None:
                    # The row's own text when it is the one sent: held once.
                    self._missed[raw] = None if key is None or text is None else (key, raw if raw == text else text)

    def missed(self, raws: list[str | None]) -> tuple[list[str | None], dict[str, str], int]:
        """The key of each row dbt_llm_resolve got (None: no text), the texts by key, and the blank rows."""
        keys: list[str | None] = []
        texts: dict[str, str] = {}
        with self._lock:
            for raw in raws:
                if raw is not None and raw not in self._missed:
                    raise InternalStateError(
                        f"dbt_llm: {self.call.where}: a row the cache join missed was not seen by dbt_llm_submit; "
                        "the model's SQL was changed after it compiled. Run it again with `dbt run`."
                    )
                found = None if raw is None else self._missed[raw]
                keys.append(None if found is None else found[0])
                if found is not None:
                    texts[found[0]] = found[1]
        return keys, texts, sum(k is None for k in keys)

    # -- texts and requests --
    def unsent(self, texts_by_key: dict[str, str]) -> dict[str, str]:
        """The texts not answered in this invocation, pending or failed for this call, or answered by
        its batch jobs; remembered until their outcome is recorded."""
        with self._lock:
            jobs = self._jobs
            keys = [k for k in texts_by_key if k not in self._pending and k not in self._failed]
        keys = [k for k in self.invocation.unanswered(keys) if jobs is None or not jobs.covers(k)]
        unsent = {k: texts_by_key[k] for k in keys}
        with self._lock:
            self._texts.update(unsent)
        return unsent

    def add_pending(self, pending: list[Pending]) -> None:
        with self._lock:
            for p in pending:  # another thread may have sent the same key meanwhile: keep the owner
                if p.owned or p.key not in self._pending:
                    self._pending[p.key] = p

    def claim(self, keys: list[str]) -> list[Pending]:
        """The first row of a key to get here claims its request; later rows reuse the outcome."""
        with self._lock:
            return [self._pending.pop(k) for k in keys if k in self._pending]

    def take_pending(self) -> list[Pending]:
        """Every request still pending for the call."""
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
            return pending

    def next_resolve(self) -> int:
        """How many dbt_llm_resolve calls this one is, counting it."""
        with self._lock:
            self._resolves += 1
            return self._resolves

    # -- outcomes --
    def record(self, outcome: Outcome) -> None:
        """An outcome as it arrives (on the engine's thread or batch mode's): spent, and written. Its
        text is forgotten then (an error row keeps a preview), so memory holds only texts in flight."""
        self._recorder.record(outcome, self._text_of(outcome.key, forget=True))

    def answered(self, outcome: Outcome) -> None:
        """A realtime request's outcome."""
        self.account.count_answered(outcome.ok)
        self.record(outcome)

    def fail(self, outcome: Outcome) -> None:
        """A key that fails without a request (its input is too long)."""
        with self._lock:
            self._failed[outcome.key] = outcome
        self.record(outcome)

    def _text_of(self, key: str, *, forget: bool = False) -> dict[str, str]:
        with self._lock:
            text = self._texts.pop(key, None) if forget else self._texts.get(key)
        return {} if text is None else {key: text}

    # -- batch mode --
    def jobs(self) -> CallJobs:
        with self._lock:
            if self._jobs is None:
                self._jobs = CallJobs()
            return self._jobs

    def started_jobs(self) -> CallJobs | None:
        with self._lock:
            return self._jobs

    # -- one chunk of missed rows --
    def answer(self, miss_keys: list[str | None], outcomes: dict[str, Outcome], *, fatal: bool) -> ChunkAnswers:
        """The answer of each missed row of a chunk, counted in the account. A key's first row takes
        the outcome of its request; later rows, and keys answered earlier, are reused."""
        with self._lock:
            self._failed.update((o.key, o) for o in outcomes.values() if not o.ok)
            chunk = ChunkAnswers()
            for key in miss_keys:
                self._answer_row(chunk, key, outcomes)
        missed = sum(k is not None for k in miss_keys)
        self.account.count_chunk(
            ChunkCounts(missed, chunk.reused, chunk.failed, chunk.skipped, chunk.lasting), fatal=fatal
        )
        for outcome in chunk.shared_failures:
            self._recorder.error(outcome, self._text_of(outcome.key), shared=True)
        return chunk

    def _answer_row(self, chunk: ChunkAnswers, key: str | None, outcomes: dict[str, Outcome]) -> None:
        if key is None:
            chunk.results.append(None)
            return
        outcome = outcomes.pop(key) if key in outcomes else None
        if outcome is not None and outcome.shared and not outcome.ok and outcome.error_kind not in _UNSENT:
            chunk.shared_failures.append(outcome)  # the request was another model's: record it here too
        if outcome is None:
            outcome = self._failed.get(key)
        answer = self.invocation.answer_of(key) if outcome is None else None
        if answer is not None:
            chunk.results.append(self.call.shown(*answer))  # answered earlier in this invocation
            chunk.reused += 1
            return
        chunk.results.append(self.call.shown(outcome.result, outcome.confidence) if outcome else None)
        if outcome is None:
            chunk.skipped += not self.call.dry_run  # not sent: a dry run, or the budget stopped it
        elif outcome.error_kind == "budget":
            chunk.skipped += 1
        elif outcome.error_kind == "cancelled":
            chunk.cancelled += 1
        elif not outcome.ok:
            chunk.failed += 1
            chunk.lasting += outcome.error_kind in LASTING_ERRORS
        elif outcome.shared:
            chunk.reused += 1

    def settle_drained(self, drained: list[Outcome]) -> tuple[int, int, int]:
        """A microbatch batch that fails: its drained outcomes counted; returns its failed and
        budget-skipped keys over the whole call, and of the failed those a rerun fails again."""
        with self._lock:
            self._failed.update((o.key, o) for o in drained if not o.ok)
            failures = list(self._failed.values())
        skipped = sum(o.error_kind == "budget" for o in failures)
        self.account.count_settled(
            failed=sum(not o.ok and o.error_kind != "budget" for o in drained),
            skipped=sum(o.error_kind == "budget" for o in drained),
        )
        lasting = sum(o.error_kind in LASTING_ERRORS for o in failures)
        return len(failures) - skipped, skipped, lasting
