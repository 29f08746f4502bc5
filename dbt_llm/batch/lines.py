"""The lines of an ended batch job, settled: each key matched by custom_id (never by position) to
its answer, charged at the batch price, checked (validated and grounded) by the realtime path's own
code, and turned into a final outcome or a retry. Also the records the runner and its caller pass around."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from ..engine import Outcome, Request
from ..engine.outcome import answer_of
from ..engine.packing import Pack, envelope, row_answers, shares
from ..functions.tasks import InvalidAnswer
from ..pricing import PriceTable
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


@dataclass(frozen=True)
class EndedBatch:
    """A batch that has ended: its record, its final status and the content of its output and error
    files, read with the provider's line format; `wire_id` is the custom_id each line was sent under."""

    record: BatchRecord
    status: BatchStatus
    files: list[bytes]
    parse: Callable[[Mapping[str, Any]], ResultLine] = parse_result_line
    wire_id: Callable[[str], str] = str


@dataclass(frozen=True)
class Settling:
    """What the lines of one collect are settled against: the requests by key, the failed tries of keys
    sent again (their attempts and spend carry over), who gets each final outcome, and the prices."""

    requests_by_key: Mapping[str, Request]
    earlier: Mapping[str, Retry]
    on_outcome: Callable[[BatchOutcome], None]
    prices: PriceTable


Verdict = tuple[str | None, str]  # (None, "") for a valid answer, else (kind, message) of why not


def settle_lines(ended: EndedBatch, settling: Settling, result: CollectResult) -> None:
    """Turn each key of an ended batch into a final outcome or a retry, by custom_id only."""
    record, requests_by_key = ended.record, settling.requests_by_key
    record_lines = record.lines()
    ours = {ended.wire_id(custom_id): custom_id for custom_id in record_lines}
    lines = {ours.get(sent, sent): line for sent, line in _result_lines(ended.files, ended.parse).items()}
    result.unknown.extend(
        (record.batch_id, cid)
        for cid in lines
        if not any(key in requests_by_key for key, _ in record_lines.get(cid, []))
    )
    for custom_id, rows in record_lines.items():
        wanted = [(key, row_id, requests_by_key[key]) for key, row_id in rows if key in requests_by_key]
        if not wanted:
            continue
        outcomes = [_next_try(record, settling.earlier.get(key), key) for key, _, _ in wanted]
        leader = outcomes[0]  # the line is one request: charged to its first row
        leader.requests += 1
        leader.retry_requests += any(o.attempts > 1 for o in outcomes)
        found = lines.get(custom_id)
        verdicts: list[Verdict]
        if found is None:
            verdicts = [_missing(ended.status)] * len(wanted)
        elif len(rows) == 1 and not rows[0][1]:
            verdicts = [_answer(wanted[0][2], found, leader, settling.prices)]
        else:
            verdicts = _answer_pack([(row_id, request) for _, row_id, request in wanted], found, outcomes, settling)
        for (_, _, request), outcome, verdict in zip(wanted, outcomes, verdicts, strict=True):
            _settle(request, outcome, verdict, settling, result)


def _result_lines(files: list[bytes], parse: Callable[[Mapping[str, Any]], ResultLine]) -> dict[str, ResultLine]:
    """custom_id -> its line; of two lines for one custom_id, one with an answer wins."""
    lines: dict[str, ResultLine] = {}
    for data in files:
        for obj in split_jsonl(data):
            line = parse(obj)
            known = lines.get(line.custom_id)
            if known is None or (known.completion is None and line.completion is not None):
                lines[line.custom_id] = line
    return lines


def _next_try(record: BatchRecord, prior: Retry | None, key: str) -> BatchOutcome:
    outcome = BatchOutcome(key=key) if prior is None else replace(prior.so_far, error=None)
    outcome.batch_id = record.batch_id
    outcome.attempts += 1
    return outcome


def _settle(
    request: Request, outcome: BatchOutcome, verdict: Verdict, settling: Settling, result: CollectResult
) -> None:
    kind, message = verdict
    if kind is None:
        result.outcomes.append(outcome)
        settling.on_outcome(outcome)
    elif kind == "bad_request":
        outcome.error_kind, outcome.error = "bad_request", message  # refused again if resent
        result.outcomes.append(outcome)
        settling.on_outcome(outcome)
    else:
        outcome.error = message
        result.retry.append(Retry(request, kind, outcome))


def _failed_line(line: ResultLine, leader: BatchOutcome) -> Verdict:
    if line.error_kind == "rate_limited":
        leader.rate_limited += 1
    return line.error_kind or "failed", line.error or "no message"


def _answer_pack(
    rows: list[tuple[str, Request]], line: ResultLine, outcomes: list[BatchOutcome], settling: Settling
) -> list[Verdict]:
    """A packed line: its usage shared out among the rows, the envelope checked as a realtime pack's
    is, each row's answer checked (and grounded against its own text) on its own."""
    if line.completion is None:
        return [_failed_line(line, outcomes[0])] * len(rows)
    completion = line.completion
    price = settling.prices.price(rows[0][1].model, batch=True)
    for outcome, usage in zip(outcomes, shares(completion.usage, len(rows)), strict=True):
        outcome.charge(usage, price)
    pack = Pack(tuple(request for _, request in rows))
    cut = Outcome(key=pack.key)  # the line's truncation, counted on every row: each is resent with more room
    try:
        content = answer_of(pack, completion, cut, pack.max_tokens * 2 ** max(o.truncated for o in outcomes))
    except InvalidAnswer as exc:
        for outcome in outcomes:
            outcome.truncated += cut.truncated
        return [("invalid_answer", str(exc))] * len(rows)
    verdicts: list[Verdict] = []
    for answer, outcome in zip(row_answers(envelope(content.result), rows, content), outcomes, strict=True):
        if isinstance(answer, InvalidAnswer):
            verdicts.append(("invalid_answer", str(answer)))
        else:
            outcome.took(answer)
            verdicts.append((None, ""))
    return verdicts


def _answer(request: Request, line: ResultLine, outcome: BatchOutcome, prices: PriceTable) -> Verdict:
    """Every line answered is billed, valid or not, at the batch price; its answer is checked as a
    realtime one is (answer_of): a cut one is resent with more room."""
    if line.completion is None:
        return _failed_line(line, outcome)
    outcome.charge(line.completion.usage, prices.price(request.model, batch=True))
    try:
        outcome.took(answer_of(request, line.completion, outcome, request.max_tokens * 2**outcome.truncated))
    except InvalidAnswer as exc:
        return "invalid_answer", str(exc)
    return None, ""


def _missing(status: BatchStatus) -> tuple[str, str]:
    """Why an ended batch has no line for a key."""
    if status.status == "failed":
        return "batch_failed", "the batch failed: " + ("; ".join(status.errors) or "no reason given")
    if status.status == "expired":
        return "batch_expired", "the batch expired before this request ran"
    if status.status == "cancelled":
        return "batch_cancelled", "the batch was cancelled before this request ran"
    return "missing", f"the batch ended {status.status} without a line for this request"
