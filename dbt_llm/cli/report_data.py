"""What `dbt-llm report` shows, read from llm_audit and llm_errors in a few SQL queries: spend per day
by model, function, owner and node, the top spenders, cache hits, failures, batch savings, cached prompt
tokens, golden accuracy and recheck agreement. A database an older plugin wrote lacks some columns:
those read as NULL (or 0), so the page still renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import duckdb

# The switch of the spend chart: its label, and the SQL of each row's name.
DIMENSIONS: dict[str, tuple[str, str]] = {
    "model": ("model", "model"),
    "function": ("function", "function"),
    "owner": ("owner", "coalesce(owner, '(no owner)')"),
    "node": ("node", "node_id"),
}
# Columns added by later migrations: what a database without them reads instead.
OPTIONAL = {
    "owner": "null",
    "group_name": "null",
    "cached_prompt_tokens": "0",
    "batch_answers": "0",
    "batch_saved_usd": "0",
    "recheck_rows": "0",
    "recheck_agree": "0",
    "golden_rows": "0",
    "golden_correct": "0",
}
SERIES = 8  # per chart; the rest is summed as "(other)"


@dataclass
class Totals:
    usd: float = 0.0
    rows: int = 0
    calls: int = 0
    tokens: int = 0
    cache_hits: int = 0
    failed_rows: int = 0


@dataclass
class ReportData:
    days: list[str]
    totals: Totals
    spend: dict[str, dict[str, list[float]]]  # dimension -> name -> USD per day
    top: dict[str, list[tuple[str, float, int, int]]]  # nodes|owners -> (name, USD, rows, calls), by USD
    daily: dict[str, list[float | None]]  # rows, cache_rate, failed_rows, saved_usd, cached_tokens, golden, recheck
    error_kinds: list[tuple[str, int]] = field(default_factory=list)
    models: list[str] = field(default_factory=list)
    owners: list[str] = field(default_factory=list)


def _audit(con: duckdb.DuckDBPyConnection, schema: str, since: date) -> str:
    """The audit rows of the window, every optional column present, a day column, cost NULL as 0."""
    have = {r[0] for r in con.execute(f"select column_name from (describe {schema}.llm_audit)").fetchall()}
    extra = ", ".join(f"{default} as {name}" for name, default in OPTIONAL.items() if name not in have)
    return (
        f"(select *{', ' + extra if extra else ''}, cast(started_at as date) as day "
        f"from {schema}.llm_audit where started_at >= date '{since.isoformat()}' "
        "and coalesce(status, '') != 'dry_run')"  # a dry run's rows are estimates, not spend
    )


def _days(con: duckdb.DuckDBPyConnection, audit: str, since: date, today: date) -> list[str]:
    """From the first day with a row (or the window's start) to today."""
    first = con.execute(f"select min(day) from {audit}").fetchone()
    start = max(since, first[0]) if first and first[0] else today
    return [(start + timedelta(d)).isoformat() for d in range((today - start).days + 1)]


def _spend(con: duckdb.DuckDBPyConnection, audit: str, days: list[str], name_sql: str) -> dict[str, list[float]]:
    rows = con.execute(
        f"select {name_sql} as name, cast(day as varchar), sum(coalesce(cost_usd, 0)) from {audit} group by all"
    ).fetchall()
    by_name: dict[str, float] = {}
    for name, _, usd in rows:
        by_name[name] = by_name.get(name, 0.0) + usd
    ranked = sorted(by_name, key=lambda n: (-by_name[n], n))
    kept = set(ranked[:SERIES]) if len(ranked) > SERIES + 1 else set(ranked)
    series = {name: [0.0] * len(days) for name in ranked if name in kept}
    if len(kept) < len(ranked):
        series["(other)"] = [0.0] * len(days)
    index = {d: i for i, d in enumerate(days)}
    for name, day, usd in rows:
        if day in index:
            series[name if name in kept else "(other)"][index[day]] += usd
    return series


def _top(con: duckdb.DuckDBPyConnection, audit: str, name_sql: str) -> list[tuple[str, float, int, int]]:
    sql = (
        f"select {name_sql}, sum(coalesce(cost_usd, 0)) as usd, sum(rows), sum(api_calls) from {audit} "
        "group by 1 order by usd desc, 1 limit 10"
    )
    return [(str(n), float(u), int(r or 0), int(c or 0)) for n, u, r, c in con.execute(sql).fetchall()]


DAILY_SQL = """
select cast(day as varchar), sum(rows), sum(cache_hits) / nullif(sum(rows), 0), sum(failed_rows),
       sum(coalesce(batch_saved_usd, 0)), sum(coalesce(cached_prompt_tokens, 0)),
       sum(golden_correct) / nullif(sum(golden_rows), 0), sum(recheck_agree) / nullif(sum(recheck_rows), 0)
from {audit} group by 1
"""
DAILY = ("rows", "cache_rate", "failed_rows", "saved_usd", "cached_tokens", "golden", "recheck")
# Counts: a day without a row is 0; rates: a day without one has none.
RATES = {"cache_rate", "golden", "recheck"}


def _daily(con: duckdb.DuckDBPyConnection, audit: str, days: list[str]) -> dict[str, list[float | None]]:
    daily: dict[str, list[float | None]] = {k: [None if k in RATES else 0.0] * len(days) for k in DAILY}
    index = {d: i for i, d in enumerate(days)}
    for day, *values in con.execute(DAILY_SQL.format(audit=audit)).fetchall():
        if day in index:
            for key, value in zip(DAILY, values, strict=True):
                daily[key][index[day]] = None if value is None else float(value)
    return daily


def _totals(con: duckdb.DuckDBPyConnection, audit: str) -> Totals:
    row = con.execute(
        f"select coalesce(sum(cost_usd), 0), coalesce(sum(rows), 0), coalesce(sum(api_calls), 0), "
        f"coalesce(sum(prompt_tokens), 0) + coalesce(sum(completion_tokens), 0), coalesce(sum(cache_hits), 0), "
        f"coalesce(sum(failed_rows), 0) from {audit}"
    ).fetchone()
    assert row is not None
    return Totals(float(row[0]), int(row[1]), int(row[2]), int(row[3]), int(row[4]), int(row[5]))


def _error_kinds(con: duckdb.DuckDBPyConnection, schema: str, since: date) -> list[tuple[str, int]]:
    sql = (
        f"select coalesce(error_kind, '(unknown)'), count(*) from {schema}.llm_errors "
        f"where created_at >= date '{since.isoformat()}' group by 1 order by 2 desc, 1"
    )
    return [(str(k), int(n)) for k, n in con.execute(sql).fetchall()]


def read_report(con: duckdb.DuckDBPyConnection, schema: str, days: int, today: date) -> ReportData:
    """The figures of the last `days` days up to `today` (UTC, as the audit's timestamps are)."""
    since = today - timedelta(days - 1)
    audit = _audit(con, schema, since)
    day_list = _days(con, audit, since, today)
    return ReportData(
        days=day_list,
        totals=_totals(con, audit),
        spend={dim: _spend(con, audit, day_list, sql) for dim, (_, sql) in DIMENSIONS.items()},
        top={"nodes": _top(con, audit, "node_id"), "owners": _top(con, audit, DIMENSIONS["owner"][1])},
        daily=_daily(con, audit, day_list),
        error_kinds=_error_kinds(con, schema, since),
        models=[r[0] for r in con.execute(f"select distinct model from {audit} order by 1").fetchall()],
        owners=[r[0] for r in con.execute(f"select distinct owner from {audit} where owner is not null order by 1")
                .fetchall()],
    )  # fmt: skip


def as_json(data: ReportData) -> dict[str, Any]:
    """The figures as plain values, embedded in the page for whoever wants them."""
    t = data.totals
    return {
        "days": data.days,
        "totals": {"usd": t.usd, "rows": t.rows, "calls": t.calls, "tokens": t.tokens},
        "models": data.models,
        "owners": data.owners,
    }
