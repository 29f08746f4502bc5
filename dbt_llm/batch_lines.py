"""The lines of an ended batch job, settled: each key matched by custom_id (never by position) to
its answer, charged at the batch price, validated as a realtime answer is, and turned into a final
outcome or a retry. Also the records the runner and its caller pass around."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from .engine import Outcome, Request
from .pricing import Price
from .providers.base import Completion
from .providers.openai_batch import BatchStatus, ResultLine, parse_result_line, split_jsonl
from .tasks import InvalidAnswer


@dataclass(frozen=True)
class BatchRecord:
    """One batch as the caller records it durably: enough to collect it after a restart."""

    batch_id: str
    input_file_id: str
    keys: tuple[str, ...]  # the custom_ids of its lines: the requests' cache keys
    created_at: datetime  # UTC, naive (as the llm_* tables keep times)
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None


@dataclass
class BatchOutcome(Outcome):
    """An Outcome, plus the batch whose line settled the key."""

    batch_id: str | None = None


@dataclass(frozen=True)
class Retry:
    """A key whose latest line got no valid answer: its request, why (`kind`, and `so_far.error`), and
    in `so_far` the attempts, truncations and spend of its tries so far, which carry into its outcome."""

    request: Request
    kind: str  # invalid_answer, rate_limited, server_error, timeout, bad_response, batch_expired, batch_failed, ...
    so_far: BatchOutcome


@dataclass
class CollectResult:
    outcomes: list[BatchOutcome] = field(default_factory=list)  # final: a valid answer, or a refused request
    retry: list[Retry] = field(default_factory=list)  # to send again
    pending: list[BatchRecord] = field(default_factory=list)  # not ended at the deadline: collect them later
    finished: list[BatchRecord] = field(default_factory=list)  # ended and settled, with their final status
    unknown: list[tuple[str, str]] = field(default_factory=list)  # (batch_id, custom_id) matching no request: ignored


@dataclass
class RunResult:
    outcomes: list[BatchOutcome] = field(default_factory=list)  # final, answered or failed
    retry: list[Retry] = field(default_factory=list)  # not sent again: the deadline had passed
    handed_off: list[Retry] = field(default_factory=list)  # given to `fallback`, with their batch spend
    pending: list[BatchRecord] = field(default_factory=list)
    unknown: list[tuple[str, str]] = field(default_factory=list)


def settle_lines(
    record: BatchRecord,
    status: BatchStatus,
    files: list[bytes],
    requests_by_key: Mapping[str, Request],
    earlier: Mapping[str, Retry],
    on_outcome: Callable[[BatchOutcome], None],
    result: CollectResult,
    price_of: Callable[[str], Price | None],
) -> None:
    """Turn each key of an ended batch into a final outcome or a retry, by custom_id only."""
    lines: dict[str, ResultLine] = {}
    for data in files:
        for obj in split_jsonl(data):
            line = parse_result_line(obj)
            known = lines.get(line.custom_id)
            if known is None or (known.completion is None and line.completion is not None):
                lines[line.custom_id] = line
    keys = set(record.keys)
    result.unknown.extend((record.batch_id, cid) for cid in lines if cid not in keys or cid not in requests_by_key)
    for key in record.keys:
        request = requests_by_key.get(key)
        if request is None:
            continue
        prior = earlier.get(key)
        outcome = BatchOutcome(key=key) if prior is None else replace(prior.so_far, error=None)
        outcome.batch_id = record.batch_id
        outcome.attempts += 1
        outcome.requests += 1
        outcome.retry_requests += outcome.attempts > 1
        found = lines.get(key)
        kind, message = _missing(status) if found is None else _answer(request, found, outcome, price_of)
        if kind is None:
            result.outcomes.append(outcome)
            on_outcome(outcome)
        elif kind == "bad_request":
            outcome.error_kind, outcome.error = "bad_request", message  # refused again if resent
            result.outcomes.append(outcome)
            on_outcome(outcome)
        else:
            outcome.error = message
            result.retry.append(Retry(request, kind, outcome))


def _answer(
    request: Request, line: ResultLine, outcome: BatchOutcome, price_of: Callable[[str], Price | None]
) -> tuple[str | None, str]:
    """Charge the line and validate its answer into `outcome.result`; else (kind, message) of why not."""
    if line.completion is None:
        if line.error_kind == "rate_limited":
            outcome.rate_limited += 1
        return line.error_kind or "failed", line.error or "no message"
    _charge(request, line.completion, outcome, price_of)
    try:
        outcome.result = _validate(request, line.completion, outcome)
    except InvalidAnswer as exc:
        return "invalid_answer", str(exc)
    return None, ""


def _charge(
    request: Request, completion: Completion, outcome: BatchOutcome, price_of: Callable[[str], Price | None]
) -> None:
    """Every line answered is billed, valid or not, at the batch price (cached prompt tokens at its
    cached-input price)."""
    usage = completion.usage
    outcome.usage = outcome.usage + usage
    price = price_of(request.task.model)
    if price is None:
        outcome.cost_usd = None
    elif outcome.cost_usd is not None:
        outcome.cost_usd += price.cost(usage.prompt_tokens, usage.completion_tokens, usage.cached_tokens)


def _validate(request: Request, completion: Completion, outcome: BatchOutcome) -> str:
    """As the realtime path: a cut or refused answer is invalid; a cut one is resent with more room."""
    if completion.finish_reason == "length":
        max_tokens = request.task.max_tokens * 2**outcome.truncated
        outcome.truncated += 1
        raise InvalidAnswer(f"the answer was cut at max_tokens={max_tokens}")
    if completion.finish_reason == "refusal":
        raise InvalidAnswer("the model refused to answer")
    return request.task.parse_answer(completion.content)


def _missing(status: BatchStatus) -> tuple[str, str]:
    """Why an ended batch has no line for a key."""
    if status.status == "failed":
        return "batch_failed", "the batch failed: " + ("; ".join(status.errors) or "no reason given")
    if status.status == "expired":
        return "batch_expired", "the batch expired before this request ran"
    if status.status == "cancelled":
        return "batch_cancelled", "the batch was cancelled before this request ran"
    return "missing", f"the batch ended {status.status} without a line for this request"
