"""The llm_* tables on Spark, and the SQL that merges a model's staged lines into them.

Plain parquet tables in the session's catalog: they take neither MERGE nor DELETE, so every write is an
`insert ... left anti join` on the table's key. That makes each merge idempotent: a merge interrupted
after some inserts is simply run again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from ..calls.verdict import errors_query, rows_failed
from .staging import LINE_COLUMNS, NodeDir

# Append only: a released migration is never edited; a change is a new entry (see migrations.py).
MIGRATIONS: list[tuple[str, str]] = [
    (
        "create llm_cache",
        """create table if not exists {s}.llm_cache (
            `key` string, `function` string, `model` string, `result` string, `prompt_tokens` bigint,
            `completion_tokens` bigint, `cost_usd` double, `created_at` timestamp, `invocation_id` string,
            `node_id` string
        ) using parquet""",
    ),
    (
        "create llm_audit",
        """create table if not exists {s}.llm_audit (
            `invocation_id` string, `node_id` string, `batch_id` string, `function` string, `model` string,
            `provider` string, `command` string, `started_at` timestamp, `finished_at` timestamp, `rows` bigint,
            `cache_hits` bigint, `api_calls` bigint, `retries` bigint, `rate_limited` bigint, `failed_rows` bigint,
            `skipped_rows` bigint, `prompt_tokens` bigint, `completion_tokens` bigint, `cost_usd` double,
            `status` string, `est_requests` bigint, `est_prompt_tokens` bigint, `est_completion_tokens` bigint,
            `est_cost_usd` double, `cached_prompt_tokens` bigint, `batch_answers` bigint, `rows_per_call` double,
            `ungrounded_values` bigint
        ) using parquet""",
    ),
    (
        "create llm_errors",
        """create table if not exists {s}.llm_errors (
            `invocation_id` string, `node_id` string, `key` string, `function` string, `model` string,
            `error_kind` string, `message` string, `attempts` int, `input_preview` string, `created_at` timestamp
        ) using parquet""",
    ),
    (
        "llm_audit: attribution (owner, group_name, tags, meta)",
        "alter table {s}.llm_audit add columns "
        "(`owner` string, `group_name` string, `tags` array<string>, `meta` string)",
    ),
    (
        # One row per job and state: created (collected_at NULL), then collected; the latest says (jobs.py).
        "create llm_batch_jobs",
        """create table if not exists {s}.llm_batch_jobs (
            `job_id` string, `provider` string, `model` string, `function` string, `invocation_id` string,
            `node_id` string, `requests` bigint, `status` string, `input_file_id` string, `output_file_id` string,
            `error_file_id` string, `completed` bigint, `failed` bigint, `created_at` timestamp,
            `finished_at` timestamp, `collected_at` timestamp
        ) using parquet""",
    ),
    (
        "create llm_batch_job_keys",
        """create table if not exists {s}.llm_batch_job_keys (
            `job_id` string, `key` string, `custom_id` string, `row_id` string
        ) using parquet""",
    ),
]

MIGRATIONS_TABLE = (
    "create table if not exists {s}.llm_migrations (`id` int, `name` string, `applied_at` timestamp) using parquet"
)


def literal(value: str) -> str:
    """A Spark SQL string literal (backslash is an escape character there)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def quote(identifier: str) -> str:
    return "`" + identifier.replace("`", "``") + "`"


def migrations(schema: str) -> list[tuple[str, list[str]]]:
    """Each migration's name and statements: its DDL, then the row that marks it applied."""
    s = quote(schema)
    return [
        (name, [sql.format(s=s), f"insert into {s}.llm_migrations values ({i}, {literal(name)}, current_timestamp())"])
        for i, (name, sql) in enumerate(MIGRATIONS)
    ]


@dataclass(frozen=True)
class Merge:
    """The statements that move one model's staged lines into the tables, and the query the post-hook
    checks for rows that failed."""

    statements: list[str]
    failures_query: str  # one row: failed rows of calls with on_error = fail
    failed_message: str  # with {failed} for the count
    drop_views: list[str]


def _staged_views(node: NodeDir, view: str) -> tuple[str, str]:
    """The staged JSONL lines of a node as a view; a batch Spark ran twice (a retried task) counts its rows once."""
    columns = ", ".join(f"{quote(name)} {kind}" for name, kind in LINE_COLUMNS)
    names = ", ".join(quote(name) for name, _ in LINE_COLUMNS)
    create_raw = (
        f"create or replace temporary view {view}_raw ({columns}) using json "
        f"options (path {literal(str(node.path))}, pathGlobFilter '*.jsonl')"
    )
    create_view = f"""create or replace temporary view {view} as
        select {names} from {view}_raw where `kind` != 'tally'
        union all
        select {names} from (
            select *, row_number() over (partition by `batch` order by `created_at`) as _n
            from {view}_raw where `kind` = 'tally'
        ) where _n = 1"""
    return create_raw, create_view


def _audit_insert(s: str, view: str, ids: tuple[str, str], status: str) -> str:
    """One llm_audit row per function and model of the node (`ids`: its invocation and node literals)."""
    inv, nid = ids
    paid = "`kind` in ('answer', 'error')"
    # A killed run's rows are `interrupted` whatever its rows came to: it was not judged.
    judged = (
        ""
        if status == "interrupted"
        else (
            "when count_if(`kind` = 'budget') > 0 then 'budget_exceeded' "
            "when coalesce(sum(`failed`), 0) > 0 then 'failed_rows' "
        )
    )
    final = (
        "case when first(`command`, true) = 'show' then 'preview' when bool_or(coalesce(`dry_run`, false)) "
        f"then 'dry_run' {judged}else {literal(status)} end"
    )
    estimated = (
        "coalesce(sum(`est_requests`), 0), coalesce(sum(`est_prompt_tokens`), 0), "
        "coalesce(sum(`est_completion_tokens`), 0), "
        "case when bool_and(`kind` != 'estimate' or `est_cost_usd` is not null) then "
        "coalesce(sum(`est_cost_usd`), 0) end"
    )
    return f"""insert into {s}.llm_audit
        select n.* from (
            select {inv} as invocation_id, {nid} as node_id, '' as batch_id, `function`, `model`,
                first(`provider`, true), first(`command`, true), min(`created_at`), current_timestamp(),
                coalesce(sum(`rows`), 0), coalesce(sum(`hits`), 0), coalesce(sum(`requests`), 0),
                coalesce(sum(`retries`), 0), coalesce(sum(`rate_limited`), 0), coalesce(sum(`failed`), 0),
                coalesce(sum(`skipped`), 0),
                coalesce(sum(`prompt_tokens`), 0), coalesce(sum(`completion_tokens`), 0),
                case when bool_and(coalesce(`priced`, true)) then coalesce(sum(`cost_usd`), 0) end,
                {final}, {estimated}, coalesce(sum(`cached_tokens`), 0), coalesce(sum(`batch_answers`), 0),
                count_if({paid} and `attempts` > 0) / nullif(sum(`requests`), 0),
                coalesce(sum(`ungrounded`), 0),
                first(`owner`, true), first(`group_name`, true), first(`tags`, true), first(`meta`, true)
            from {view} where `function` is not null group by `function`, `model`
        ) n left anti join {s}.llm_audit a
            on a.invocation_id = n.invocation_id and a.node_id = n.node_id and a.batch_id = n.batch_id
            and a.`function` = n.`function` and a.`model` = n.`model`"""


def merge(node: NodeDir, status: str) -> Merge:
    """`status`: what the audit says of this model's run (success; error for a model whose statement
    failed; interrupted for a killed run's); it becomes failed_rows when rows failed (but for a killed
    run), and a `dbt show` is always a preview."""
    s = quote(node.schema)
    view = "_dbt_llm_staged_" + hashlib.sha256(str(node.path).encode()).hexdigest()[:16]
    inv, nid = literal(node.invocation_id), literal(node.node_id)
    create_raw, create_view = _staged_views(node, view)
    cache = f"""insert into {s}.llm_cache
        select n.* from (
            select `key`, first(`function`), first(`model`), first(`result`), first(`prompt_tokens`),
                   first(`completion_tokens`), first(`cost_usd`), current_timestamp(), {inv}, {nid}
            from {view} where `kind` = 'answer' and `key` is not null and `result` is not null group by `key`
        ) n left anti join {s}.llm_cache c on n.`key` = c.`key`"""
    errors = f"""insert into {s}.llm_errors
        select n.* from (
            select {inv} as invocation_id, {nid} as node_id, `key`, first(`function`), first(`model`),
                   first(`error_kind`), first(`message`), cast(first(`attempts`) as int), first(`input_preview`),
                   first(`created_at`)
            from {view} where `kind` = 'error' and `key` is not null group by `key`
        ) n left anti join {s}.llm_errors e
            on e.invocation_id = n.invocation_id and e.node_id = n.node_id and e.`key` = n.`key`"""
    audit = _audit_insert(s, view, (inv, nid), status)
    failures = (
        f"select coalesce(sum(`failed`), 0) from {view} "
        f"where `kind` = 'tally' and `handle` in "
        f"(select `handle` from {view} where `kind` = 'call' and coalesce(`on_error`, 'fail') = 'fail')"
    )
    query = errors_query(node.schema, node.invocation_id, node.node_id)
    message = str(rows_failed(node.node_id, "{failed}", query))  # the count is known after the merge
    drops = [f"drop view if exists {view}", f"drop view if exists {view}_raw"]
    return Merge([create_raw, create_view, cache, errors, audit], failures, message, drops)
