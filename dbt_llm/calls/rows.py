"""The rows of the llm_* tables as typed records: each dataclass gives its table's columns."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

# `cancelled`: Ctrl-C or SIGTERM stopped the run; the row holds what was paid until then.
Status = Literal["running", "preview", "success", "failed_rows", "budget_exceeded", "dry_run", "error", "cancelled"]


def now() -> datetime:
    """UTC wall clock as a naive timestamp (DuckDB TIMESTAMP)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


@dataclass(frozen=True)
class CacheRow:
    key: str
    function: str
    model: str
    result: str
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None
    created_at: datetime
    invocation_id: str
    node_id: str
    confidence: float | None = None  # of the answer among the allowed ones, from its logprobs (NULL: unknown)


@dataclass(frozen=True)
class ErrorRow:
    invocation_id: str
    node_id: str
    key: str
    function: str
    model: str
    error_kind: str
    message: str
    attempts: int
    input_preview: str
    created_at: datetime


@dataclass
class AuditRow:
    """One llm_audit row: (invocation, node, batch, function, model) and its counters."""

    invocation_id: str
    node_id: str
    batch_id: str
    function: str
    model: str
    provider: str
    command: str
    started_at: datetime = dataclasses.field(default_factory=now)
    finished_at: datetime | None = None
    rows: int = 0
    cache_hits: int = 0
    api_calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    failed_rows: int = 0
    skipped_rows: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    status: Status = "running"
    est_requests: int = 0
    est_prompt_tokens: int = 0
    est_completion_tokens: int = 0
    est_cost_usd: float | None = 0.0
    cached_prompt_tokens: int = 0
    batch_answers: int = 0
    rows_per_call: float | None = None  # rows sent / api_calls: above 1 when rows are packed
    ungrounded_values: int = 0  # extracted strings the input text does not contain: nulled
    recheck_rows: int = 0  # cached rows asked again (bypassing the cache) that got an answer
    recheck_agree: int = 0  # of which the new answer agrees with the cached one
    mean_confidence: float | None = None  # over the rows this row's requests answered with a confidence
    compare_rows: int = 0  # a dry run with dbt_llm_compare: sampled rows the new spec and the last run's both answered
    compare_agree: int = 0  # of which the two answers agree
    golden_rows: int = 0  # golden inputs answered and scored (golden=)
    golden_correct: float = 0.0  # the sum of their scores: a count of right answers, Jaccard or field shares aside
    cascade_threshold: float | None = None  # a cascade's escalate_below ('auto': the one chosen from the golden set)
    cascade_agreement: float | None = None  # 'auto': the golden agreement with escalate_to at that threshold
    cache_write_tokens: int = 0  # of prompt_tokens, written to the provider's prompt cache (Anthropic)
    # Who the spend belongs to (calls/attribution.py): the group's owner else meta.owner, the group, tags, meta.
    owner: str | None = None
    group_name: str | None = None
    tags: list[str] | None = None
    meta: str | None = None  # JSON
    batch_saved_usd: float = 0.0  # batch mode: the list price of its batch answers' tokens less what they cost


@dataclass(frozen=True)
class CallRow:
    """One macro call of a model's run as it was compiled: what its rows' keys are made of, so the
    keys can be recomputed in SQL, with no call (`sha256(spec_hash || text)`, the text cut at truncate_at)."""

    invocation_id: str
    node_id: str
    batch_id: str
    function: str
    model: str
    spec_hash: str
    spec: str  # the canonical JSON the spec_hash is the hash of
    text_sql: str  # the macro's `text` argument: a SQL expression over the model's input
    truncate_at: int | None
    command: str
    created_at: datetime


@dataclass(frozen=True)
class BatchJobRow:
    """One job of the provider's Batch API: recorded as soon as it is created, so a run that dies
    while it waits loses nothing; the next run collects it (`collected_at` is NULL until then)."""

    job_id: str
    provider: str
    model: str
    function: str
    invocation_id: str
    node_id: str
    requests: int
    status: str
    input_file_id: str | None
    output_file_id: str | None
    error_file_id: str | None
    completed: int | None
    failed: int | None
    created_at: datetime
    finished_at: datetime | None
    collected_at: datetime | None


@dataclass(frozen=True)
class GoldenResultRow:
    """One golden input of a call, per run: what was expected, what the call answered, and its score
    (functions/golden.py). `answer` and `score` are NULL when the input got no answer."""

    invocation_id: str
    node_id: str
    function: str
    model: str
    spec_hash: str
    golden: str  # the relation of the golden set
    input: str
    expected: str
    answer: str | None
    correct: bool | None
    score: float | None
    wrong_fields: list[str] | None  # extract: the expected fields answered otherwise
    created_at: datetime


def _columns(cls: type[Any]) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


CACHE_COLUMNS = _columns(CacheRow)
ERROR_COLUMNS = _columns(ErrorRow)
AUDIT_COLUMNS = _columns(AuditRow)
AUDIT_KEY = AUDIT_COLUMNS[:5]
BATCH_JOB_COLUMNS = _columns(BatchJobRow)
CALL_COLUMNS = _columns(CallRow)
GOLDEN_COLUMNS = _columns(GoldenResultRow)


def row_dict(
    row: CacheRow | ErrorRow | AuditRow | BatchJobRow | CallRow | GoldenResultRow, columns: list[str]
) -> dict[str, Any]:
    """The table's columns of a row (a Ledger is an AuditRow with more fields that are not columns)."""
    return {c: getattr(row, c) for c in columns}
