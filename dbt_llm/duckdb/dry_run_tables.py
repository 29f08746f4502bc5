"""Tables a dry run had to create (an incremental model's first build, a microbatch model's first
batch) so that the models downstream could be estimated on their rows. They hold NULL where a call
would be needed, so a real run must never take one for a model's previous state: they are dropped
when the dbt command ends, and, after a command that was killed, when the next one first connects
(before dbt lists the relations). `_llm_finish` records them in llm_dry_run_tables."""

from __future__ import annotations

from collections.abc import Callable

import duckdb


def drop_dry_run_tables(
    conn: duckdb.DuckDBPyConnection, schema: str, log: Callable[[str], None], invocation_id: str | None = None
) -> list[str]:
    """Drop the tables recorded by `invocation_id` (by any invocation when None: at the first connect,
    no dry run of this process has run yet), in one transaction; returns their names."""
    where, params = ("where invocation_id = ?", [invocation_id]) if invocation_id is not None else ("", [])
    cur = conn.cursor()
    try:
        cur.execute("begin")
        try:
            found = cur.execute(f"select relation from {schema}.llm_dry_run_tables {where}", params).fetchall()
            relations = [r for (r,) in found]
            for relation in relations:
                cur.execute(f"drop table if exists {relation}")
            cur.execute(f"delete from {schema}.llm_dry_run_tables {where}", params)
            cur.execute("commit")
        except Exception:
            cur.execute("rollback")
            raise
    finally:
        cur.close()
    for relation in relations:
        log(f"dbt_llm: dropped {relation}, which a dry run created for the models downstream to read")
    return relations
