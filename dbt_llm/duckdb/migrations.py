"""The llm_* tables' schema: named, append-only migrations, applied once per database."""

from __future__ import annotations

import duckdb

# Append only: a released migration is never edited; a change is a new entry.
MIGRATIONS: list[tuple[str, str]] = [
    (
        "create llm_cache",
        """create table if not exists {s}.llm_cache (
            key varchar primary key,
            function varchar not null,
            model varchar not null,
            result varchar not null,
            prompt_tokens bigint,
            completion_tokens bigint,
            cost_usd double,
            created_at timestamp not null,
            invocation_id varchar,
            node_id varchar
        )""",
    ),
    (
        "create llm_audit",
        """create table if not exists {s}.llm_audit (
            invocation_id varchar not null,
            node_id varchar not null,
            function varchar not null,
            model varchar not null,
            provider varchar,
            started_at timestamp,
            finished_at timestamp,
            rows bigint,
            cache_hits bigint,
            api_calls bigint,
            retries bigint,
            failed_rows bigint,
            skipped_rows bigint,
            prompt_tokens bigint,
            completion_tokens bigint,
            cost_usd double,
            status varchar,
            primary key (invocation_id, node_id, function, model)
        )""",
    ),
    (
        "create llm_errors",
        """create table if not exists {s}.llm_errors (
            invocation_id varchar not null,
            node_id varchar not null,
            key varchar not null,
            function varchar,
            model varchar,
            error_kind varchar,
            message varchar,
            attempts integer,
            input_preview varchar,
            created_at timestamp,
            primary key (invocation_id, node_id, key)
        )""",
    ),
    (
        "llm_audit: dry-run estimates",
        """alter table {s}.llm_audit add column if not exists est_requests bigint;
        alter table {s}.llm_audit add column if not exists est_prompt_tokens bigint;
        alter table {s}.llm_audit add column if not exists est_completion_tokens bigint;
        alter table {s}.llm_audit add column if not exists est_cost_usd double""",
    ),
    (
        "llm_audit: 429s",
        "alter table {s}.llm_audit add column if not exists rate_limited bigint",
    ),
    (
        # A primary key cannot change in place: the table is rebuilt, inside the migration's transaction.
        "llm_audit: the dbt command, and one row per microbatch batch",
        """create table {s}.llm_audit_v2 (
            invocation_id varchar not null,
            node_id varchar not null,
            batch_id varchar not null default '',
            function varchar not null,
            model varchar not null,
            provider varchar,
            command varchar,
            started_at timestamp,
            finished_at timestamp,
            rows bigint,
            cache_hits bigint,
            api_calls bigint,
            retries bigint,
            rate_limited bigint,
            failed_rows bigint,
            skipped_rows bigint,
            prompt_tokens bigint,
            completion_tokens bigint,
            cost_usd double,
            status varchar,
            est_requests bigint,
            est_prompt_tokens bigint,
            est_completion_tokens bigint,
            est_cost_usd double,
            primary key (invocation_id, node_id, batch_id, function, model)
        );
        insert into {s}.llm_audit_v2 by name select *, '' as batch_id, null as command from {s}.llm_audit;
        drop table {s}.llm_audit;
        alter table {s}.llm_audit_v2 rename to llm_audit""",
    ),
    (
        "llm_audit: cached prompt tokens and answers by batch job",
        """alter table {s}.llm_audit add column if not exists cached_prompt_tokens bigint;
        alter table {s}.llm_audit add column if not exists batch_answers bigint""",
    ),
    (
        "create llm_batch_jobs and llm_batch_job_keys",
        """create table {s}.llm_batch_jobs (
            job_id varchar primary key,
            provider varchar not null,
            model varchar not null,
            function varchar not null,
            invocation_id varchar not null,
            node_id varchar not null,
            requests bigint not null,
            status varchar not null,
            input_file_id varchar,
            output_file_id varchar,
            error_file_id varchar,
            completed bigint,
            failed bigint,
            created_at timestamp not null,
            finished_at timestamp,
            collected_at timestamp
        );
        create table {s}.llm_batch_job_keys (
            job_id varchar not null,
            key varchar not null,
            primary key (job_id, key)
        )""",
    ),
    (
        "llm_audit: rows per call",
        "alter table {s}.llm_audit add column if not exists rows_per_call double",
    ),
    (
        "llm_batch_job_keys: packed lines",
        """alter table {s}.llm_batch_job_keys add column if not exists custom_id varchar;
        alter table {s}.llm_batch_job_keys add column if not exists row_id varchar""",
    ),
    (
        "llm_audit: ungrounded values",
        "alter table {s}.llm_audit add column if not exists ungrounded_values bigint",
    ),
    (
        # Tables a dry run had to create so that the models downstream could be estimated: dropped when
        # the command ends (or at the next command's first connect, after a kill): dry_run_tables.py.
        "create llm_dry_run_tables",
        """create table if not exists {s}.llm_dry_run_tables (
            relation varchar primary key,
            node_id varchar,
            invocation_id varchar,
            created_at timestamp
        )""",
    ),
    (
        "create llm_calls: the spec of each call of a run",
        """create table {s}.llm_calls (
            invocation_id varchar not null,
            node_id varchar not null,
            batch_id varchar not null,
            function varchar not null,
            model varchar not null,
            spec_hash varchar not null,
            spec varchar not null,
            text_sql varchar not null,
            truncate_at bigint,
            command varchar,
            created_at timestamp not null,
            primary key (invocation_id, node_id, batch_id, spec_hash, text_sql)
        )""",
    ),
    (
        "llm_audit: recheck rows and agreement",
        """alter table {s}.llm_audit add column if not exists recheck_rows bigint;
        alter table {s}.llm_audit add column if not exists recheck_agree bigint""",
    ),
    (
        "llm_cache: answer confidence; llm_audit: mean confidence",
        """alter table {s}.llm_cache add column if not exists confidence double;
        alter table {s}.llm_audit add column if not exists mean_confidence double""",
    ),
    (
        "llm_audit: compare rows and agreement",
        """alter table {s}.llm_audit add column if not exists compare_rows bigint;
        alter table {s}.llm_audit add column if not exists compare_agree bigint""",
    ),
    (
        # Golden sets (golden=): what each run scored, per audit row and per golden input (duckdb/golden.py).
        "golden sets: llm_audit golden_rows and golden_correct, llm_golden_results",
        """alter table {s}.llm_audit add column if not exists golden_rows bigint;
        alter table {s}.llm_audit add column if not exists golden_correct double;
        create table {s}.llm_golden_results (
            invocation_id varchar not null,
            node_id varchar not null,
            function varchar not null,
            model varchar not null,
            spec_hash varchar not null,
            golden varchar not null,
            input varchar,
            expected varchar,
            answer varchar,
            correct boolean,
            score double,
            wrong_fields varchar[],
            created_at timestamp not null
        )""",
    ),
    (
        # Cascades (escalate_to=): the threshold used, and with escalate_below='auto' the golden agreement.
        "cascades: llm_audit cascade_threshold and cascade_agreement",
        """alter table {s}.llm_audit add column if not exists cascade_threshold double;
        alter table {s}.llm_audit add column if not exists cascade_agreement double""",
    ),
    (
        # provider anthropic bills prompt tokens written to its cache apart (1.25x input): counted apart.
        "prompt cache writes: llm_audit cache_write_tokens",
        """alter table {s}.llm_audit add column if not exists cache_write_tokens bigint""",
    ),
    (
        # Who spends what (calls/attribution.py), and what batch mode saved against list price.
        "llm_audit: attribution (owner, group_name, tags, meta) and batch_saved_usd",
        """alter table {s}.llm_audit add column if not exists owner varchar;
        alter table {s}.llm_audit add column if not exists group_name varchar;
        alter table {s}.llm_audit add column if not exists tags varchar[];
        alter table {s}.llm_audit add column if not exists meta json;
        alter table {s}.llm_audit add column if not exists batch_saved_usd double""",
    ),
]


def quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def migrate(conn: duckdb.DuckDBPyConnection, schema: str) -> str:
    """Create the schema and tables if needed; returns the qualified schema name."""
    cur = conn.cursor()
    try:
        database = cur.execute("select current_database()").fetchone()[0]  # type: ignore[index]
        qualified = f"{quote(database)}.{quote(schema)}"
        cur.execute(f"create schema if not exists {qualified}")
        cur.execute(
            f"create table if not exists {qualified}.llm_migrations "
            "(id integer primary key, name varchar, applied_at timestamp)"
        )
        done = {row[0] for row in cur.execute(f"select name from {qualified}.llm_migrations").fetchall()}
        for i, (name, sql) in enumerate(MIGRATIONS):
            if name not in done:
                # One transaction per migration: a crash midway leaves the previous state, never half of one.
                cur.execute("begin")
                try:
                    cur.execute(sql.format(s=qualified))
                    cur.execute(f"insert into {qualified}.llm_migrations values (?, ?, now())", [i, name])
                    cur.execute("commit")
                except Exception:
                    cur.execute("rollback")
                    raise
        return qualified
    finally:
        cur.close()
