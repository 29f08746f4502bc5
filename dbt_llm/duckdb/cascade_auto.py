"""escalate_below='auto' (with golden=): when the cascade's SQL renders (_llm_cascade_auto), its golden
inputs are answered by both models through the calls' own SQL (_llm_resolve_sql: the same keys, cache
and engine as the rows, so a rerun sends nothing), and dbt_llm_cascade_choose picks the threshold
(calls/cascade.choose_threshold); the macro renders it into the cascade's SQL.

Each model's golden call pays into that model's audit row (a GoldenAccount: its ledger, never its rows),
and both rows record cascade_threshold and cascade_agreement. A dry run asks nothing: it prices the
golden inputs for both models and uses the threshold the last real run chose (from llm_audit), else 1.0;
the golden answers already cached give the share of rows it prices for escalate_to (cascade_dry.py). A
command without post-hooks (dbt compile, dbt show) does not answer the golden set: it uses the last run's
threshold, else 1.0."""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..calls.call import Call
from ..calls.cascade import Choice, choose_threshold
from .cascade_dry import golden_share
from .golden import golden_call
from .live_call import LiveCall
from .writer import Writer

if TYPE_CHECKING:
    from .cascade import CascadeCall, Cascades

AUTO_SUFFIX = ":auto"  # the golden calls of an auto cascade: its macro call's handle (or escalate_to's), suffixed


class CascadeAuto:
    """The golden calls of the invocation's auto cascades, by handle, and the thresholds chosen."""

    def __init__(
        self, cascades: Cascades, writer: Writer, planned: Callable[[Call], str], log: Callable[[str], None]
    ) -> None:
        self._cascades = cascades
        self._writer = writer
        self._planned = planned
        self._log = log
        self._lock = threading.Lock()
        self._answering: dict[str, LiveCall] = {}
        self._chosen: dict[str, float] = {}  # by the macro call's handle: a call rendered again keeps its choice

    def live(self, handle: str) -> LiveCall | None:
        with self._lock:
            return self._answering.get(handle)

    # -- dbt_llm_cascade_auto_calls(handle): what _llm_cascade_auto answers the golden set with --
    def calls(self, handle: str) -> str:
        """The two golden calls of the cascade (the first model with its confidence, and escalate_to),
        made once per macro call, as JSON: their planned form, the golden relation, the audit table."""
        cascade = self._cascades.of(handle)
        small = _answering(cascade.first, self._writer, with_confidence=True)
        large = _answering(cascade.escalated, self._writer, with_confidence=False)
        with self._lock:
            for made in (small, large):
                self._answering.setdefault(made.handle, made)
        planned = [json.loads(self._planned(made.call)) for made in (small, large)]
        audit = str(planned[0]["cache_table"]).removesuffix("llm_cache") + "llm_audit"
        return json.dumps(
            {"small": planned[0], "large": planned[1], "golden": cascade.first.call.golden, "audit_table": audit}
        )

    # -- dbt_llm_cascade_choose(pairs, last threshold, handle): once per rendering, after the golden answers --
    def choose(self, pairs: str, last: float, handle: str) -> float:
        """The threshold of the cascade: chosen from the golden answers (`pairs`: [small JSON, large JSON]
        per golden input; 'null' when the command answers no golden set), else the last run's (`last`, 0:
        none), else 1.0. Recorded in both audit rows and logged."""
        cascade = self._cascades.of(handle)
        with self._lock:
            if handle in self._chosen:
                return self._chosen[handle]
        call = cascade.first.call
        answers = None if call.dry_run else json.loads(pairs)
        if answers is None:
            threshold = last if last > 0 else 1.0
            self._log(_unchosen(cascade, threshold, "the last run's" if last > 0 else None))
            if call.dry_run:  # the golden answers cached say what share a dry run's rows escalate
                cached = _triples(call, json.loads(pairs) or [])
                cascade.golden_share = golden_share([c for _, c, _ in cached], threshold)
        else:
            choice = choose_threshold(_triples(call, answers), _target(call))
            threshold = choice.threshold
            for live in (cascade.first, cascade.escalated):
                with live.account.lock:
                    live.account.ledger.cascade_threshold = threshold
                    live.account.ledger.cascade_agreement = choice.agreement
            self._log(_chosen_note(cascade, choice))
        cascade.threshold = threshold
        with self._lock:
            self._chosen[handle] = threshold
        return threshold


def _named(call: Call) -> str:
    return f"dbt_llm cascade: llm_{call.task.function}({call.text_sql}) in {call.node_id}"


def _target(call: Call) -> float:
    assert call.cascade is not None  # only a cascade's call is chosen for
    return call.cascade.target


def _answering(live: LiveCall, writer: Writer, *, with_confidence: bool) -> LiveCall:
    """A call answering the golden inputs for one model of the cascade: as a golden call (realtime, its
    model's audit row, no rows counted), the handle of its own, the first model's with its confidence."""
    made = golden_call(live, writer)
    call = dataclasses.replace(
        made.call, handle=live.handle + AUTO_SUFFIX, with_confidence=with_confidence, cascade=None, golden=""
    )
    return LiveCall(call, made.invocation, made.account, writer)


def _triples(call: Call, pairs: list[list[Any]]) -> list[tuple[object, float | None, object]]:
    """(small answer, its confidence, large answer) of each golden input both models answered."""
    choices = call.task.choices
    assert choices is not None  # a cascade's task has them (plan_cascade)
    triples: list[tuple[object, float | None, object]] = []
    for small, large in pairs:
        if small is None or large is None:
            continue
        first, second = (v if isinstance(v, dict) else json.loads(v) for v in (small, large))  # JSON or its text
        confidence = first.get("confidence")
        triples.append(
            (first.get(choices.name), None if confidence is None else float(confidence), second.get(choices.key))
        )
    return triples


def _chosen_note(cascade: CascadeCall, choice: Choice) -> str:
    call, large = cascade.first.call, cascade.escalated.call.task.model
    head = f"{_named(call)}: escalate_below auto = {choice.threshold:.4g}: "
    if not choice.inputs:
        return head + f"no golden input was answered by both models, so every row below full confidence goes to {large}"
    agrees = (
        f"the cascade agrees with {large} on {choice.agree}/{choice.inputs} golden inputs "
        f"(target {_target(call):g}); {round(100 * choice.escalated / choice.inputs)}% of them escalated"
    )
    if choice.reached:
        return head + agrees
    return head + agrees + f": below the target even so, so every row below full confidence goes to {large}"


def _unchosen(cascade: CascadeCall, threshold: float, source: str | None) -> str:
    call = cascade.first.call
    why = "a dry run asks no golden input" if call.dry_run else f"dbt {call.command} answers no golden set"
    used = (
        f"{source} threshold"
        if source
        else f"1.0 (every row below full confidence priced for {cascade.escalated.call.task.model}: an upper bound)"
    )
    return f"{_named(call)}: escalate_below auto = {threshold:.4g}: {why}, so it uses {used}"


__all__ = ["AUTO_SUFFIX", "CascadeAuto"]
