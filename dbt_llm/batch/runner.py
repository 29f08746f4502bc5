"""Nightly batch mode: requests sent through the OpenAI Batch API at its lower price, then waited for.

The runner is dbt-free and synchronous (its caller blocks on it in a thread of its own). It splits
requests into batches, tells the caller about each batch as soon as it exists (so a killed run can
collect it later and nothing is paid twice), polls until the batches end or a deadline passes, and
matches every answer to its request by custom_id, which is the request's cache key. Lines without a
valid answer are sent again in a follow-up batch, or handed to the caller's realtime path.
"""

from __future__ import annotations

import contextlib
import functools
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TypeVar

from ..engine import Request
from ..engine.packing import Pack, packs_of, row_ids
from ..pricing import PriceTable
from ..providers.base import TransientError
from ..providers.openai import chat_body
from ..providers.openai_batch import BatchStatus, OpenAIBatchClient
from .lines import BatchOutcome, BatchRecord, CollectResult, EndedBatch, Retry, RunResult, Settling, settle_lines

T = TypeVar("T")

MAX_LINES = 50_000  # the Batch API's limits per input file
MAX_BYTES = 200_000_000


@dataclass(frozen=True)
class BatchSettings:
    """How the runner sends and waits: the Batch API's file limits, the completion window, the polling
    backoff, how often one API call is tried, and the most text characters one packed line carries."""

    max_lines: int = MAX_LINES
    max_bytes: int = MAX_BYTES
    completion_window: str = "24h"
    poll_initial: float = 5.0
    poll_max: float = 60.0
    call_attempts: int = 5
    pack_chars: int = 20_000


class BatchRunner:
    def __init__(
        self,
        client: OpenAIBatchClient,
        *,
        prices: PriceTable | None = None,
        settings: BatchSettings = BatchSettings(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client = client
        self._prices = prices or PriceTable()  # lines are charged at its batch prices
        self._settings = settings
        self._sleep = sleep
        self._clock = clock

    # -- submit --
    def submit(
        self,
        requests: list[Request],
        on_created: Callable[[BatchRecord], None],
        *,
        earlier: Mapping[str, Retry] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> list[BatchRecord]:
        """Upload the requests (one line per key, or per pack of `rows_per_request` keys) in files
        within the limits and create a batch of each; `on_created` gets each batch right after it is
        created, before the next is uploaded. A key of `earlier` (sent before, its answer cut at
        max_tokens) is sent with max_tokens doubled as many times as it was cut, as the realtime
        path does."""
        lines: dict[str, bytes] = {}
        rows: dict[str, list[str]] = {}  # custom_id -> the keys of its line
        fresh = list({request.key: request for request in requests}.values())  # equal keys: sent and paid once
        for pack in packs_of(fresh, lambda request: request, self._settings.pack_chars):
            asked: Request | Pack = pack[0] if len(pack) == 1 else Pack(tuple(pack))
            cut = max((earlier[r.key].so_far.truncated for r in pack if earlier and r.key in earlier), default=0)
            max_tokens = asked.max_tokens * 2**cut  # a cut answer gets more room
            messages, schema = asked.messages(), asked.response_format()
            body = chat_body(asked.model, messages, schema, max_tokens, asked.temperature, asked.top_logprobs)
            line = self._client.request_line(asked.key, body)
            data = json.dumps(line, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
            if len(data) > self._settings.max_bytes:
                raise ValueError(f"the batch line {asked.key} has {len(data)} bytes, over {self._settings.max_bytes}")
            lines[asked.key] = data
            rows[asked.key] = [r.key for r in pack]
        records: list[BatchRecord] = []
        for number, chunk in enumerate(self._split(lines), start=1):
            jsonl = b"".join(lines[key] for key in chunk)
            file_id = self._retrying(functools.partial(self._client.upload, jsonl, f"dbt_llm_{number}.jsonl"))
            status = self._create(file_id, metadata)
            keys = tuple(key for custom_id in chunk for key in rows[custom_id])
            packed = tuple(
                (key, custom_id, row_id)
                for custom_id in chunk
                if len(rows[custom_id]) > 1
                for key, row_id in zip(rows[custom_id], row_ids(len(rows[custom_id])), strict=True)
            )
            record = BatchRecord(status.id, file_id, keys, _created_at(status), status.status, packed=packed)
            try:
                on_created(record)
            except BaseException:
                # Not recorded, it could never be collected: do not let it run and be billed.
                with contextlib.suppress(Exception):
                    self._client.cancel(status.id)
                raise
            records.append(record)
        return records

    def _split(self, lines: dict[str, bytes]) -> list[list[str]]:
        chunks: list[list[str]] = []
        size = 0
        for key, data in lines.items():
            if not chunks or len(chunks[-1]) >= self._settings.max_lines or size + len(data) > self._settings.max_bytes:
                chunks.append([])
                size = 0
            chunks[-1].append(key)
            size += len(data)
        return chunks

    def _create(self, file_id: str, metadata: Mapping[str, str] | None) -> BatchStatus:
        maybe_created = False
        attempt = 1
        while True:
            try:
                if maybe_created:
                    found = next((b for b in self._client.recent() if b.input_file_id == file_id), None)
                    if found is not None:
                        return found
                window = self._settings.completion_window
                return self._client.create(file_id, completion_window=window, metadata=metadata)
            except TransientError as exc:
                # A lost answer (timeout, 5xx) may follow a batch the server did create: creating
                # another would pay for every line twice, so look for it first.
                maybe_created = maybe_created or exc.kind != "rate_limited"
                if attempt >= self._settings.call_attempts:
                    raise
                self._sleep(self._backoff(exc, attempt))
                attempt += 1

    def _retrying(self, call: Callable[[], T]) -> T:
        attempt = 1
        while True:
            try:
                return call()
            except TransientError as exc:
                if attempt >= self._settings.call_attempts:
                    raise
                self._sleep(self._backoff(exc, attempt))
                attempt += 1

    def _backoff(self, error: TransientError, attempt: int) -> float:
        if error.retry_after is not None:
            return error.retry_after
        return float(min(self._settings.poll_initial * 2 ** (attempt - 1), self._settings.poll_max))

    # -- collect --
    def collect(
        self,
        records: list[BatchRecord],
        requests_by_key: Mapping[str, Request],
        *,
        deadline: float,
        on_outcome: Callable[[BatchOutcome], None],
        earlier: Mapping[str, Retry] | None = None,
    ) -> CollectResult:
        """Poll the batches until each has ended or `deadline` (of the runner's monotonic clock) has
        passed; settle every line of each ended batch by its custom_id. `on_outcome` gets each final
        outcome as soon as it is known. `earlier` holds the failed tries of keys these batches send
        again: their attempts and spend carry into the outcomes."""
        result = CollectResult()
        settling = Settling(requests_by_key, earlier or {}, on_outcome, self._prices)
        open_ = {record.batch_id: record for record in records}
        delay = self._settings.poll_initial
        while True:
            wait = delay
            for batch_id, record in list(open_.items()):
                try:
                    status = self._client.get(batch_id)
                    record = replace(
                        record,
                        status=status.status,
                        output_file_id=status.output_file_id,
                        error_file_id=status.error_file_id,
                    )
                    open_[batch_id] = record
                    if not status.terminal:
                        continue
                    files = [self._client.content(f) for f in (status.output_file_id, status.error_file_id) if f]
                except TransientError as exc:
                    # The batch runs on regardless: look again next round, later if the server asks.
                    wait = max(wait, exc.retry_after or 0.0)
                    continue
                del open_[batch_id]
                settle_lines(EndedBatch(record, status, files), settling, result)
                result.finished.append(record)
            left = deadline - self._clock()
            if not open_ or left <= 0:
                break
            self._sleep(min(wait, left))
            delay = min(delay * 2, self._settings.poll_max)
        result.pending = list(open_.values())
        return result

    # -- run --
    def run(
        self,
        requests: list[Request],
        *,
        deadline: float,
        max_attempts: int,
        on_created: Callable[[BatchRecord], None],
        on_outcome: Callable[[BatchOutcome], None],
        fallback: Callable[[list[Request]], None] | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Submit the requests, then `follow` their batches."""
        by_key: dict[str, Request] = {}
        for request in requests:
            by_key.setdefault(request.key, request)
        records = self.submit(list(by_key.values()), on_created, metadata=metadata)
        hooks = RunHooks(on_created, on_outcome, fallback)
        return self.follow(
            records, by_key, deadline=deadline, max_attempts=max_attempts, hooks=hooks, metadata=metadata
        )

    def follow(
        self,
        records: list[BatchRecord],
        requests_by_key: Mapping[str, Request],
        *,
        deadline: float,
        max_attempts: int,
        hooks: RunHooks,
        metadata: Mapping[str, str] | None = None,
    ) -> RunResult:
        """Collect the batches, and send the lines without a valid answer again in follow-up batches
        until a key has had `max_attempts` lines (then it fails: invalid_answer or retries_exhausted).
        With `hooks.fallback`, lines without a valid answer are handed to it (the caller's realtime
        path) instead of a follow-up batch. A follow-up batch is not submitted once `deadline` has
        passed: its keys are left in `retry`."""
        result = RunResult()
        earlier: dict[str, Retry] = {}
        while records:
            collected = self.collect(
                records, requests_by_key, deadline=deadline, on_outcome=hooks.on_outcome, earlier=earlier
            )
            if hooks.on_round is not None:
                hooks.on_round(collected)
            result.outcomes += collected.outcomes
            result.pending += collected.pending
            result.unknown += collected.unknown
            again: list[Retry] = []
            for retry in collected.retry:
                if hooks.fallback is not None:
                    result.handed_off.append(retry)
                elif retry.so_far.attempts >= max_attempts:
                    outcome = exhausted(retry)
                    result.outcomes.append(outcome)
                    hooks.on_outcome(outcome)
                else:
                    again.append(retry)
            if hooks.fallback is not None and collected.retry:
                hooks.fallback([retry.request for retry in collected.retry])
            if again and self._clock() >= deadline:
                result.retry += again
                break
            earlier = {retry.request.key: retry for retry in again}
            records = self.submit(
                [retry.request for retry in again], hooks.on_created, earlier=earlier, metadata=metadata
            )
        return result


@dataclass(frozen=True)
class RunHooks:
    """What the caller of BatchRunner.follow is told, and may do, as the batches end."""

    on_created: Callable[[BatchRecord], None]  # each batch, the moment it exists
    on_outcome: Callable[[BatchOutcome], None]  # each final outcome, as soon as it is known
    fallback: Callable[[list[Request]], None] | None = None  # the realtime path, for lines without an answer
    # After each round of collecting, before its retries: the caller records the batches that
    # ended, and may raise to stop (batches still running at the deadline).
    on_round: Callable[[CollectResult], None] | None = None


def exhausted(retry: Retry) -> BatchOutcome:
    """A key whose attempts ran out: its last error stands."""
    outcome = replace(retry.so_far)
    if retry.kind == "invalid_answer":
        outcome.error_kind = "invalid_answer"
    else:
        outcome.error_kind, outcome.error = "retries_exhausted", f"{retry.kind}: {outcome.error}"
    return outcome


def _created_at(status: BatchStatus) -> datetime:
    if status.created_at is None:
        return datetime.now(timezone.utc).replace(tzinfo=None)
    return datetime.fromtimestamp(status.created_at, timezone.utc).replace(tzinfo=None)
