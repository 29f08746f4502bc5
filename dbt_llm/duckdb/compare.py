"""A preview before a change is paid (`--vars '{dbt_llm_dry_run: true, dbt_llm_compare: 50}'`): when a
call's spec changed since the model's last run, a sample of the rows the dry run priced is asked the
new spec for real (cached, so the real run reuses them) and compared with what the last run's spec
answered, found through llm_calls. Only the sample is sent."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import duckdb

from ..engine import Outcome, Request
from ..functions.tasks import sha256_hex
from .live_call import LiveCall
from .writer import cursor_of

# The spec of the same call (function and text) in the model's last real run: not a preview, a dry
# run, or one still running.
_OLD_SPECS = """
select distinct spec_hash, truncate_at from {s}.llm_calls
where node_id = ? and function = ? and text_sql = ? and invocation_id = (
    select invocation_id from {s}.llm_audit
    where node_id = ? and status not in ('preview', 'dry_run', 'running')
    order by started_at desc limit 1
)
"""


# The golden accuracy of the same function and model in the model's last real run.
_OLD_GOLDEN = """
select sum(golden_correct), sum(golden_rows) from {s}.llm_audit
where node_id = ? and function = ? and model = ? and golden_rows > 0 and invocation_id = (
    select invocation_id from {s}.llm_audit
    where node_id = ? and status not in ('preview', 'dry_run', 'running')
    order by started_at desc limit 1
)
"""


@dataclass(frozen=True)
class OldSpec:
    spec_hash: str
    truncate_at: int | None

    def key(self, text: str) -> str:
        """The cache key the old spec gave `text` (as _llm_key_sql computes it in SQL)."""
        cut = text if self.truncate_at is None else text[: self.truncate_at]
        return sha256_hex(self.spec_hash + cut)


class Comparer:
    def __init__(
        self,
        answer_now: Callable[[LiveCall, list[Request]], list[Outcome]],
        conn: Callable[[], tuple[duckdb.DuckDBPyConnection, str] | None],
        log: Callable[[str], None],
    ) -> None:
        self._answer_now = answer_now
        self._conn = conn
        self._log = log

    def run(self, calls: list[LiveCall]) -> None:
        """Compare each call of one model whose spec changed; `calls` are all of the model's live calls."""
        bound = self._conn()
        if bound is None:
            return
        current = {live.call.task.spec_hash for live in calls}
        for live in calls:
            if live.compared is not None:
                self._compare(live, bound, current)

    def _compare(self, live: LiveCall, bound: tuple[duckdb.DuckDBPyConnection, str], current: set[str]) -> None:
        call = live.call
        olds = _old_specs(*bound, call.node_id, call.task.function, call.text_sql)
        if any(old.spec_hash == call.task.spec_hash for old in olds):
            self._log(f"dbt_llm compare: {_name(live)}: its spec is the one the last run used; nothing to compare.")
            return
        changed = [old for old in olds if old.spec_hash not in current]
        if len(changed) != 1:
            why = "the model has no earlier run of this call" if not changed else "several of its calls changed"
            self._log(f"dbt_llm compare: {_name(live)}: {why}, so there is no earlier answer to compare with.")
            return
        assert live.compared is not None
        rows = {key: text for key, (text, _) in live.compared.take().items()}
        old = changed[0]
        before = _cached(*bound, {key: old.key(text) for key, text in rows.items()})
        after = self._answers(live, rows)
        both = [key for key in rows if key in before and after.get(key) is not None]
        agree = sum(call.task.kind.agrees(before[key], after[key] or "") for key in both)
        live.account.count_compare(len(both), agree)
        self._log(_note(live, len(rows), len(both), agree) + _golden_note(live, _old_golden(*bound, live)))

    def _answers(self, live: LiveCall, rows: dict[str, str]) -> dict[str, str | None]:
        """The new spec's answers: sent now (cached and audited like any), or answered earlier in this run."""
        answers: dict[str, str | None] = {}
        for key in rows:
            earlier = live.invocation.answer_of(key)
            answers[key] = None if earlier is None else earlier[0]
        fresh = live.unsent({key: text for key, text in rows.items() if answers[key] is None})
        call = live.call
        requests = [Request(key, call.task, text, live.budget, call.rows_per_request) for key, text in fresh.items()]
        for outcome in self._answer_now(live, requests) if requests else []:
            answers[outcome.key] = outcome.result
        return answers


def _old_specs(
    conn: duckdb.DuckDBPyConnection, schema: str, node_id: str, function: str, text_sql: str
) -> list[OldSpec]:
    cur = cursor_of(conn)
    try:
        found = cur.execute(_OLD_SPECS.format(s=schema), [node_id, function, text_sql, node_id]).fetchall()
    finally:
        cur.close()
    return [OldSpec(spec_hash, truncate_at) for spec_hash, truncate_at in found]


def _cached(conn: duckdb.DuckDBPyConnection, schema: str, old_keys: dict[str, str]) -> dict[str, str]:
    """The old spec's cached answers, by the new key of each row."""
    if not old_keys:
        return {}
    cur = cursor_of(conn)
    try:
        sql = f"select key, result from {schema}.llm_cache where key in (select unnest(?))"
        found = dict(cur.execute(sql, [list(old_keys.values())]).fetchall())
    finally:
        cur.close()
    return {new: found[old] for new, old in old_keys.items() if old in found}


def _old_golden(conn: duckdb.DuckDBPyConnection, schema: str, live: LiveCall) -> tuple[float, int] | None:
    call = live.call
    cur = cursor_of(conn)
    try:
        params = [call.node_id, call.task.function, call.task.model, call.node_id]
        found = cur.execute(_OLD_GOLDEN.format(s=schema), params).fetchone()
    finally:
        cur.close()
    return None if found is None or not found[1] else (float(found[0]), int(found[1]))


def _golden_note(live: LiveCall, old: tuple[float, int] | None) -> str:
    """The golden accuracy of the last run and of the new spec (its golden set was answered by now:
    the post-hook runs it before dbt_llm_finish)."""
    lg = live.ledger
    new = f"{lg.golden_correct:g}/{lg.golden_rows} = {lg.golden_correct / lg.golden_rows:.2f}" if lg.golden_rows else ""
    before = f"{old[0]:g}/{old[1]} = {old[0] / old[1]:.2f}" if old else ""
    if not new and not before:
        return ""
    return f" Golden accuracy: last run {before or 'not scored'}, new spec {new or 'not scored'}."


def _name(live: LiveCall) -> str:
    return f"{live.call.where} llm_{live.call.task.function}({live.call.text_sql}) ({live.call.task.model})"


def _note(live: LiveCall, sampled: int, both: int, agree: int) -> str:
    lg = live.ledger
    share = f" ({agree / both:.2f})" if both else ""
    cost = "" if lg.est_cost_usd is None else f", ~${lg.est_cost_usd:.4f}"
    return (
        f"dbt_llm compare: {_name(live)}: the spec changed since the last run. Of {sampled} sampled row(s) asked "
        f"the new spec, {both} have an answer of the last run's spec and {agree} of those agree{share}. The dry "
        f"run priced {lg.est_requests} request(s){cost} for the rows it would pay again; the sample's answers "
        "are cached, so the real run reuses them."
    )
