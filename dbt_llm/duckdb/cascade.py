"""Cascades (`escalate_to=`): what dbt_llm_cascade_submit and dbt_llm_resolve do with the rows of a
cascade's call that its cache join did not answer (_llm_cascade_sql).

A cascade is two live calls: the macro call's own (its model, the handle in the SQL) and the call of
`escalate_to` (a handle of its own, never in the SQL). Each is the call a plain macro call of that model
makes (the same task, so the same cache keys), with its own audit row: the first model's counts every
row with text, escalate_to's the rows escalated to it. A row is asked of escalate_to only once the first
model's confidence for it is known to be below the threshold (or unknown): from the cache (the SQL tells
dbt_llm_cascade_submit), or from the first model's answer in this run."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable

import pyarrow as pa

from ..calls.call import Call
from ..errors import InternalStateError
from ..functions.tasks import cache_key
from .audit_book import AuditBook
from .cascade_auto import CascadeAuto
from .cascade_batch import Stages, second_stage
from .cascade_dry import Bound, Share, guessed
from .live_call import LiveCall
from .resolver import Resolver
from .sender import Sender
from .writer import Writer

ESCALATED_SUFFIX = ":escalated"  # the handle of a cascade's escalate_to call is its macro call's, so suffixed


def escalated_call(call: Call) -> Call | None:
    """The call of a cascade's escalate_to model: the same call with the larger model's task."""
    if call.cascade is None:
        return None
    return dataclasses.replace(
        call, handle=call.handle + ESCALATED_SUFFIX, task=call.cascade.large, cascade=None, golden="", recheck=0
    )


class CascadeCall:
    """One cascade in flight: its two live calls, its threshold, and the keys (of the first model) whose
    cached answer is below the threshold, as dbt_llm_cascade_submit was told."""

    def __init__(self, first: LiveCall, escalated: LiveCall, threshold: float | None) -> None:
        self.first = first
        self.escalated = escalated
        self.threshold = threshold
        self._lock = threading.Lock()
        self._cached_below: set[str] = set()
        # Batch mode: escalate_to's rows go in a second job (cascade_batch.py); a dry run sends no job.
        call = first.call
        self.stages = Stages() if call.mode == "batch" and not call.dry_run else None
        # A dry run: escalate_to's call for the rows the first model would be asked (cascade_dry.py).
        self.dry_lock = threading.Lock()
        self.guessed: LiveCall | None = None
        self.golden_share: Share | None = None  # 'auto': from the cached golden answers

    def cached_below(self, keys: list[str]) -> None:
        with self._lock:
            self._cached_below.update(keys)

    def known_below(self, keys: list[str]) -> set[str]:
        with self._lock:
            return {k for k in keys if k in self._cached_below}

    def escalated_key(self, text: str) -> str:
        return cache_key(self.escalated.call.task.spec_hash, text)

    def below(self, key: str, result: str | None) -> bool:
        """Whether the first model's answer of `key` in this run goes to escalate_to: its confidence is
        below the threshold or unknown. A row it did not answer (failed, skipped) is not escalated,
        but a dry run's rows all go to escalate_to's pricing, at the share of cascade_dry.py."""
        if result is None:
            return self.first.call.dry_run
        answer = self.first.invocation.answer_of(key)
        confidence = None if answer is None else answer[1]
        return confidence is None or self.threshold is None or confidence < self.threshold


class Cascades:
    """The cascades of the invocation, by the handle of their macro call."""

    def __init__(
        self,
        sender: Sender,
        resolver: Resolver,
        book: AuditBook,
        writer: Writer,
        planned: Callable[[Call], str],
        log: Callable[[str], None],
        bound: Bound,
    ) -> None:
        self.auto = CascadeAuto(self, writer, planned, log)  # escalate_below='auto'
        self._log = log
        self._bound = bound  # dbt's connection and the schema: a dry run reads the last run's share
        self._sender = sender
        self._resolver = resolver
        self._book = book
        self._writer = writer
        self._lock = threading.Lock()
        self._invocation = ""
        self._of: dict[str, CascadeCall] = {}

    def prepared(self, live: LiveCall) -> LiveCall:
        """A live call just made (dbt_llm_prepare); with a cascade, its escalate_to call is made too."""
        call = live.call
        large = escalated_call(call)
        if large is None or call.cascade is None:
            return live
        escalated = LiveCall(large, live.invocation, self._book.account_of(large), self._writer)
        if not call.cascade.auto:  # 'auto': recorded once chosen (CascadeAuto.choose)
            for made in (live, escalated):
                with made.account.lock:
                    made.account.ledger.cascade_threshold = call.cascade.threshold
        with self._lock:
            if call.invocation_id != self._invocation:
                self._invocation, self._of = call.invocation_id, {}
            if call.handle not in self._of:
                self._of[call.handle] = CascadeCall(live, escalated, call.cascade.threshold)
        return live

    def of(self, handle: str) -> CascadeCall:
        with self._lock:
            cascade = self._of.get(handle)
        if cascade is None:
            raise InternalStateError(
                "dbt_llm: this query was compiled in another dbt invocation or process; run the model with `dbt run`."
            )
        return cascade

    # -- dbt_llm_cascade_submit(key, text, row's text, cached below the threshold, handle): the distinct missed texts --
    def submit(self, keys: pa.Array, texts: pa.Array, raws: pa.Array, cached: pa.Array, handles: pa.Array) -> pa.Array:
        """Queues the prefetch: the first model's request for a text it has no cached answer of, and
        escalate_to's for a text whose cached first answer is below the threshold; returns NULLs."""
        if len(keys) == 0:
            return pa.nulls(0, pa.string())
        cascade = self.of(handles[0].as_py())
        cascade.first.note_missed(raws.to_pylist(), keys.to_pylist(), texts.to_pylist())
        first: dict[str, str] = {}
        escalated: dict[str, str] = {}
        below: list[str] = []
        for key, text, known in zip(keys.to_pylist(), texts.to_pylist(), cached.to_pylist(), strict=True):
            if key is None or text is None:
                continue
            if known:
                below.append(key)
                escalated[cascade.escalated_key(text)] = text
            else:
                first[key] = text
        cascade.cached_below(below)
        if cascade.stages is not None:  # batch mode: escalate_to waits for the first model's job
            cascade.stages.offer(first, escalated)
            escalated = {}
        if first:
            self._sender.send(cascade.first, first, prefetch=True)
        if escalated:
            self._sender.send(cascade.escalated, escalated, prefetch=True)
        return pa.nulls(len(keys), pa.string())

    # -- dbt_llm_resolve(key, text, handle) of a cascade's call --
    def resolve(self, live: LiveCall, miss_keys: list[str | None], texts_by_key: dict[str, str]) -> list[str | None]:
        """The answers of one chunk's missed rows: the first model's for the rows it is sure of, and
        escalate_to's for the others (asked after the first model's answers of the chunk arrived)."""
        cascade = self.of(live.handle)
        known = cascade.known_below(list(texts_by_key))
        ask_first = {k: t for k, t in texts_by_key.items() if k not in known}
        first_rows = [k if k in ask_first else None for k in miss_keys]
        results = self._resolver.resolve(cascade.first, first_rows, ask_first)
        second_stage(cascade, self._sender, self._writer, self._log)  # batch mode: once stage 1 is collected
        escalate: list[str | None] = []
        for key, result in zip(miss_keys, results, strict=True):
            up = key is not None and key in texts_by_key and (key in known or cascade.below(key, result))
            escalate.append(cascade.escalated_key(texts_by_key[key]) if up and key is not None else None)
        rows = sum(k is not None for k in escalate)
        if rows == 0:
            return results
        texts = {k: texts_by_key[m] for k, m in zip(escalate, miss_keys, strict=True) if k is not None and m}
        account = cascade.escalated.account
        if account.count_rows(rows):
            self._writer.put_audit(account.snapshot())
        if cascade.first.call.dry_run:
            self._price(
                cascade, [k if m not in known else None for k, m in zip(escalate, miss_keys, strict=True)], texts
            )
            escalate = [k if m in known else None for k, m in zip(escalate, miss_keys, strict=True)]
        answers = self._resolver.resolve(cascade.escalated, escalate, texts)
        return [a if k is not None else r for r, k, a in zip(results, escalate, answers, strict=True)]

    def _price(self, cascade: CascadeCall, keys: list[str | None], texts: dict[str, str]) -> None:
        """A dry run: the rows the first model would be asked, priced for escalate_to at the share."""
        if any(k is not None for k in keys):
            live = guessed(cascade, self._bound, self._writer, self._log)
            self._resolver.resolve(live, keys, {k: texts[k] for k in keys if k is not None})

    def calls_of(self, call: Call) -> list[Call]:
        """The calls a macro call makes: its own and, with a cascade, its escalate_to call."""
        large = escalated_call(call)
        return [call] if large is None else [call, large]


__all__ = ["Cascades", "escalated_call"]
