"""Audit rows a killed run left `running` (kill -9, a lost machine): the next invocation that opens the
warehouse settles them as `interrupted`, from what the killed run wrote to llm_cache and llm_errors.

DuckDB lets one process at a time open the file for writing, so a `running` row of another invocation
found at attach time belongs to a process that is gone. Rows of invocations this process knows (the
current one) are never touched."""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

import duckdb

# Cache and error rows carry no batch_id: a microbatch model's batches run one after another, so a
# row belongs to the audit row (of the same invocation, node, function and model) that started last
# before it was written.
_OPEN = """
with keyed as (
    select invocation_id, node_id, batch_id, function, model, status, started_at,
           lag(started_at) over w as prev_started, lead(started_at) over w as next_started
    from {s}.llm_audit
    window w as (partition by invocation_id, node_id, function, model order by started_at)
), open as (
    select * from keyed where status = 'running' and not list_contains(?::varchar[], invocation_id)
), paid as (
    select o.invocation_id, o.node_id, o.batch_id, o.function, o.model, count(*) as answers,
           sum(c.prompt_tokens) as prompt, sum(c.completion_tokens) as completion,
           sum(c.cost_usd) as usd, count(c.cost_usd) as priced, max(c.created_at) as last,
           avg(c.confidence) as confidence
    from open o join {s}.llm_cache c
      on (c.invocation_id, c.node_id, c.function, c.model) = (o.invocation_id, o.node_id, o.function, o.model)
    where {window_c}
    group by all
), failed as (
    select o.invocation_id, o.node_id, o.batch_id, o.function, o.model, count(*) as failed,
           sum(coalesce(e.attempts, 1)) as attempts, max(e.created_at) as last
    from open o join {s}.llm_errors e
      on (e.invocation_id, e.node_id, e.function, e.model) = (o.invocation_id, o.node_id, o.function, o.model)
    where {window_e}
    group by all
)
select o.invocation_id, o.node_id, o.batch_id, o.function, o.model,
       coalesce(p.answers, 0), coalesce(p.prompt, 0), coalesce(p.completion, 0),
       case when coalesce(p.priced, 0) < coalesce(p.answers, 0) then null else coalesce(p.usd, 0) end,
       coalesce(f.failed, 0), coalesce(f.attempts, 0), coalesce(greatest(p.last, f.last), p.last, f.last, o.started_at),
       p.confidence
from open o
left join paid p using (invocation_id, node_id, batch_id, function, model)
left join failed f using (invocation_id, node_id, batch_id, function, model)
"""


def _window(alias: str) -> str:
    return (
        f"(o.prev_started is null or {alias}.created_at >= o.started_at) "
        f"and (o.next_started is null or {alias}.created_at < o.next_started)"
    )


# A killed run may have written some counters itself: keep the larger figure. An unknown price
# (a NULL cost_usd in the cache) stays unknown.
_SETTLE = """
update {s}.llm_audit set
    status = 'interrupted', finished_at = ?,
    api_calls = greatest(coalesce(api_calls, 0), ?), retries = greatest(coalesce(retries, 0), ?),
    failed_rows = greatest(coalesce(failed_rows, 0), ?),
    prompt_tokens = greatest(coalesce(prompt_tokens, 0), ?),
    completion_tokens = greatest(coalesce(completion_tokens, 0), ?),
    cost_usd = case when ?::double is null then null else greatest(coalesce(cost_usd, 0), ?) end,
    mean_confidence = coalesce(?, mean_confidence)
where invocation_id = ? and node_id = ? and batch_id = ? and function = ? and model = ?
"""


@dataclass(frozen=True)
class Settled:
    rows: int
    api_calls: int
    cost_usd: float | None  # None when an answer's price is unknown

    def note(self) -> str:
        cost = "an unknown cost" if self.cost_usd is None else f"${self.cost_usd:.6f}"
        return (
            f"dbt_llm: {self.rows} audit row(s) of an earlier run that was killed were still `running`; settled "
            f"as `interrupted` from what it cached: {self.api_calls} API call(s), {cost}."
        )


def settle_interrupted(
    conn: duckdb.DuckDBPyConnection, schema: str, known_invocations: Collection[str]
) -> Settled | None:
    """Settle the `running` rows of invocations not in `known_invocations`, in one transaction;
    None when there were none."""
    cur = conn.cursor()
    try:
        cur.execute("begin")
        try:
            sql = _OPEN.format(s=schema, window_c=_window("c"), window_e=_window("e"))
            found = cur.execute(sql, [list(known_invocations)]).fetchall()
            for row in found:
                answers, prompt, completion, usd, failed, attempts, last, confidence = row[5:]
                calls, retries = answers + attempts, attempts - failed
                counts = [last, calls, retries, failed, prompt, completion, usd, usd, confidence]
                params = [*counts, *row[:5]]
                cur.execute(_SETTLE.format(s=schema), params)
            cur.execute("commit")
        except Exception:
            cur.execute("rollback")
            raise
    finally:
        cur.close()
    if not found:
        return None
    costs = [row[8] for row in found]
    total = None if any(c is None for c in costs) else sum(costs)
    return Settled(len(found), sum(row[5] + row[10] for row in found), total)
