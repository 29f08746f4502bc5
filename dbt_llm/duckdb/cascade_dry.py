"""A cascade's dry run: no confidence is known without asking, so escalate_to is priced for the rows the
first model would be asked times a share, the first of: the share escalated in the last real run of the
same node and cascade (llm_audit), for escalate_below='auto' the share of cached golden inputs below the
threshold, else 1.0 (every row: the upper bound). Rows whose cached first answer is below the threshold
go to escalate_to for sure, so they are priced whole. The log says which share and where it came from.

The last run's share is escalate_to's rows that were no cache hit over the first model's: the texts each
model was asked in that run (exact unless rows of a cached first answer below the threshold went to
escalate_to that run, which makes it larger: the estimate errs high), capped at 1."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import duckdb

from .live_call import LiveCall
from .writer import Writer, cursor_of

if TYPE_CHECKING:
    from .cascade import CascadeCall

Bound = Callable[[], "tuple[duckdb.DuckDBPyConnection, str] | None"]


@dataclass(frozen=True)
class Share:
    """The share of the first model's rows a dry run prices for escalate_to, and where it came from."""

    value: float
    source: str


EVERY_ROW = Share(1.0, "every row, as nothing says otherwise (no earlier run of this cascade): an upper bound")


def last_run_share(bound: Bound, cascade: CascadeCall) -> Share | None:
    """From the last real run of the node whose cascade had the same models (and threshold, unless
    'auto') and asked the first model at least one text."""
    conn = bound()
    call, large = cascade.first.call, cascade.escalated.call.task.model
    if conn is None or call.cascade is None:
        return None
    same, params = (
        ("s.cascade_agreement is not null", [])
        if call.cascade.auto
        else ("s.cascade_threshold = ?", [call.cascade.threshold])
    )
    cur = cursor_of(conn[0])
    try:
        row = cur.execute(
            f"""select coalesce(l.rows - l.cache_hits, 0), s.rows - s.cache_hits, s.invocation_id
            from {conn[1]}.llm_audit s left join {conn[1]}.llm_audit l
              on l.invocation_id = s.invocation_id and l.node_id = s.node_id and l.batch_id = s.batch_id
             and l.function = s.function and l.model = ?
            where s.node_id = ? and s.function = ? and s.model = ? and s.status not in ('dry_run', 'preview')
              and {same} and s.rows - s.cache_hits > 0
            order by s.started_at desc limit 1""",
            [large, call.node_id, call.task.function, call.task.model, *params],
        ).fetchone()
    finally:
        cur.close()
    if row is None:
        return None
    escalated, asked, invocation = int(row[0]), int(row[1]), str(row[2])
    return Share(
        min(1.0, escalated / asked),
        f"the share escalated in the last run of this cascade ({escalated} of the {asked} text(s) asked of "
        f"{call.task.model} went to {large}, invocation {invocation})",
    )


def golden_share(confidences: Sequence[float | None], threshold: float) -> Share | None:
    """'auto': the share of the golden inputs both models have answered (cached) that are below the
    threshold, or of unknown confidence."""
    if not confidences:
        return None
    below = sum(c is None or c < threshold for c in confidences)
    return Share(
        below / len(confidences),
        f"the share of golden inputs below the threshold ({below} of the {len(confidences)} cached)",
    )


def guessed(cascade: CascadeCall, bound: Bound, writer: Writer, log: Callable[[str], None]) -> LiveCall:
    """escalate_to's call for the rows the first model would be asked, priced at the share; made, and
    its share logged, by the cascade's first dry-run chunk that escalates."""
    with cascade.dry_lock:
        if cascade.guessed is None:
            share = last_run_share(bound, cascade) or cascade.golden_share or EVERY_ROW
            made = cascade.escalated
            live = LiveCall(made.call, made.invocation, made.account, writer)
            live.estimate_share = share.value
            cascade.guessed = live
            log(_note(cascade, share))
        return cascade.guessed


def _note(cascade: CascadeCall, share: Share) -> str:
    call, large = cascade.first.call, cascade.escalated.call.task.model
    return (
        f"dbt_llm cascade: llm_{call.task.function}({call.text_sql}) in {call.where}: the dry run prices "
        f"{large} for {round(100 * share.value)}% of the rows asked of {call.task.model}: {share.source}"
    )


__all__ = ["Share", "golden_share", "guessed", "last_run_share"]
