"""The lines of an ended batch job, settled: each key matched by custom_id (never by position) to
its answer, charged at the batch price, validated as a realtime answer is, and turned into a final
outcome or a retry. Also the records the runner and its caller pass around."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime

from ..engine import Outcome, Request
from ..engine.packing import shares
from ..functions.tasks import InvalidAnswer
from ..pricing import Price
from ..providers.base import Completion
from ..providers.openai_batch import BatchStatus, ResultLine, parse_result_line, split_jsonl


@dataclass(frozen=True)
class BatchRecord:
    """One batch as the caller records it durably: enough to collect it after a restart."""

    batch_id: str
    input_file_id: str
    keys: tuple[str, ...]  # the requests' cache keys: the custom_ids of its unpacked lines
    created_at: datetime  # UTC, naive (as the llm_* tables keep times)
    status: str
    output_file_id: str | None = None
    error_file_id: str | None = None
    packed: tuple[tuple[str, str, str], ...] = ()  # (key, custom_id, row id) of the keys in packed lines

    def lines(self) -> dict[str, list[tuple[str, str]]]:
        """custom_id -> the (key, row id) pairs its line answers, in row order; an unpacked line
        answers one key, with no row id."""
        packs: dict[str, list[tuple[str, str]]] = {}
        for key, custom_id, row_id in self.packed:
            packs.setdefault(custom_id, []).append((key, row_id))
        in_packs = {key for key, _, _ in self.packed}
        lines = {key: [(key, "")] for key in self.keys if key not in in_packs}
        for custom_id, rows in packs.items():
            lines[custom_id] = sorted(rows, key=lambda row: int(row[1].lstrip("r")))
        return lines


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
    record_lines = record.lines()
    result.unknown.extend(
        (record.batch_id, cid)
        for cid in lines
        if not any(key in requests_by_key for key, _ in record_lines.get(cid, []))
    )
    for custom_id, rows in record_lines.items():
        wanted = [(key, row_id, requests_by_key[key]) for key, row_id in rows if key in requests_by_key]
        if not wanted:
            continue
        outcomes: list[BatchOutcome] = []
        for key, _, _ in wanted:
            prior = earlier.get(key)
            outcome = BatchOutcome(key=key) if prior is None else replace(prior.so_far, error=None)
            outcome.batch_id = record.batch_id
            outcome.attempts += 1
            outcomes.append(outcome)
        leader = outcomes[0]  # the line is one request: charged to its first row
        leader.requests += 1
        leader.retry_requests += any(o.attempts > 1 for o in outcomes)
        found = lines.get(custom_id)
        verdicts: list[tuple[str | None, str]]
        if found is None:
            verdicts = [_missing(status)] * len(wanted)
        elif len(rows) == 1 and not rows[0][1]:
            verdicts = [_answer(wanted[0][2], found, leader, price_of)]
        else:
            verdicts = _answer_pack([(row_id, request) for _, row_id, request in wanted], found, outcomes, price_of)
        for (_, _, request), outcome, (kind, message) in zip(wanted, outcomes, verdicts, strict=True):
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


def _answer_pack(
    rows: list[tuple[str, Request]],
    line: ResultLine,
    outcomes: list[BatchOutcome],
    price_of: Callable[[str], Price | None],
) -> list[tuple[str | None, str]]:
    """A packed line: its usage shared out among the rows, each row's answer validated on its own."""
    if line.completion is None:
        if line.error_kind == "rate_limited":
            outcomes[0].rate_limited += 1
        return [(line.error_kind or "failed", line.error or "no message")] * len(rows)
    completion = line.completion
    for (_, request), outcome, usage in zip(rows, outcomes, shares(completion.usage, len(rows)), strict=True):
        _charge(request, replace(completion, usage=usage), outcome, price_of)
    if completion.finish_reason in ("length", "refusal"):
        cut = completion.finish_reason == "length"
        for outcome in outcomes:
            outcome.truncated += cut
        why = "the answer was cut at max_tokens" if cut else "the model refused to answer"
        return [("invalid_answer", why)] * len(rows)
    try:
        value = json.loads(completion.content or "")
    except ValueError:
        value = None
    if not isinstance(value, dict):
        why = f"the packed answer is not an object of row ids: {(completion.content or '')[:200]!r}"
        return [("invalid_answer", why)] * len(rows)
    verdicts: list[tuple[str | None, str]] = []
    for (row_id, request), outcome in zip(rows, outcomes, strict=True):
        try:
            if row_id not in value:
                raise InvalidAnswer(f"the packed answer has no entry for row {row_id}")
            outcome.result = request.task.parse_answer(json.dumps(value[row_id], ensure_ascii=False))
            verdicts.append((None, ""))
        except InvalidAnswer as exc:
            verdicts.append(("invalid_answer", str(exc)))
    return verdicts


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
    if completion.finish_reason == "length" and not request.keeps_cut_answers:
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
