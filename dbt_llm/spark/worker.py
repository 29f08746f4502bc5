"""What runs in Spark's Python workers for each batch of a model's rows: the answers.

Nothing here imports pyspark or pandas (udfs.py wraps these functions), so it is tested as plain
Python. Each worker process builds one engine per config, lazily, and remembers per call the answers
it got, so a text seen again in a later batch (or a Spark task retried in this process) is not sent
again. Every answer is staged as it arrives (staging.py): what was paid survives a killed executor.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..batch.lines import BatchOutcome
from ..calls.call import Call
from ..calls.plan import plan_call
from ..calls.rows import now
from ..calls.verdict import errors_query, rows_failed
from ..config import LlmConfig
from ..engine import Engine, Outcome, Request
from ..engine.budget import Budget
from ..engine.factory import engine_for
from ..errors import DryRunStop, RowFailuresError
from ..functions.tasks import sha256_hex
from ..pricing import PriceTable
from ..providers.factory import build_provider
from .ledger import spark_budget
from .planning import spark_config
from .staging import LineWriter, NodeDir, read_call, staged_lines, wanted_dir


@dataclass
class _CallState:
    """One prepared call in this process: its answers so far and the keys that failed."""

    call: Call
    config: LlmConfig
    node: NodeDir
    answers: dict[str, str] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # One for the call (shared across workers by a ledger when capped: ledger.py); requests of one
    # budget may share a pack (packing.signature).
    budget: Budget = field(default_factory=lambda: Budget(None))
    skipped: set[str] = field(default_factory=set)  # not sent: max_cost_usd was reached
    unclaimed: set[str] = field(default_factory=set)  # answered by this call's batch jobs, no row claimed yet
    # `dbt show --limit N`: Spark runs a whole partition through the UDF even for a LIMIT, so a preview
    # sends at most N texts per worker process; the other rows show NULL and count as skipped.
    preview_limit: int | None = None
    sent: int = 0
    # An incremental model has no rollback on Spark: a batch with failed rows fails the query, so no
    # NULL is appended that a later run would never revisit (a table is rebuilt whole next run anyway).
    fail_fast: bool = False
    incremental: bool = False


class _Worker:
    """The state of one Python worker process, kept across Spark tasks and batches."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._engines: dict[str, tuple[Engine, PriceTable]] = {}
        self._calls: dict[str, _CallState] = {}

    def engine(self, config: LlmConfig) -> tuple[Engine, PriceTable]:
        identity = repr(config)  # every setting, prices included
        with self._lock:
            if identity not in self._engines:
                prices = PriceTable(config.prices)
                self._engines[identity] = (engine_for(config, prices, lambda: build_provider(config)), prices)
            return self._engines[identity]

    def call(self, root: Path, handle: str) -> _CallState:
        with self._lock:
            state = self._calls.get(handle)
        if state is not None:
            return state
        stored = read_call(root, handle)
        config = spark_config(stored["config"])
        args = stored["args"]
        call = plan_call(args, str(args.get("invocation_id")), config, PriceTable(config.prices))
        state = _CallState(call, config, NodeDir(root, config.schema, call.invocation_id, call.node_id))
        caps = (config.max_cost_usd, call.max_cost_usd)
        state.budget = spark_budget(root, call.invocation_id, call.node_id, caps)
        state.incremental = args.get("materialized") == "incremental"
        state.fail_fast = state.incremental and call.on_error == "fail"
        limit = args.get("preview_limit")
        if not call.hooked and isinstance(limit, int) and limit >= 0:
            state.preview_limit = limit
        # A task Spark runs again (its executor was lost, or a row failed) finds what the first attempt
        # paid for, and does not pay again for a row that failed.
        for line in staged_lines(state.node.path):
            if line.get("handle") != handle or line.get("key") is None:
                continue
            key = str(line["key"])
            if line.get("kind") == "answer" and line.get("result") is not None:
                state.answers[key] = str(line["result"])
                if line.get("batch_answers"):
                    state.unclaimed.add(key)
            elif line.get("kind") == "error":
                state.failed.add(key)
            elif line.get("kind") == "budget":
                state.skipped.add(key)
        with self._lock:
            return self._calls.setdefault(handle, state)


_WORKER = _Worker()


def state_of(root: Path, handle: str) -> _CallState:
    """A prepared call as this worker process knows it (read from its call file the first time)."""
    return _WORKER.call(root, handle)


def engine_of(config: LlmConfig) -> Engine:
    return _WORKER.engine(config)[0]


def answer_batch(
    root: str, handles: list[str | None], keys: list[str | None], texts: list[str | None], cached: list[str | None]
) -> list[str | None]:
    """dbt_llm_answer(handle, key, text, cached): one Arrow batch of a model's rows. A row with a cached
    answer gets it; the other distinct texts are sent (once per process and call), staged as answered,
    and their answers returned. A row that failed gets NULL and a staged error line."""
    handle = next((h for h in handles if h), None)
    if handle is None:
        return [None] * len(keys)
    if handle.startswith(WANTED):
        return want(Path(root), handle.removeprefix(WANTED), keys, texts, cached)
    state = _WORKER.call(Path(root), handle)
    call, config = state.call, state.config
    writer = LineWriter(state.node.path)
    batch = _sort(state, keys, texts, cached)
    if call.dry_run:
        _dry(state, batch)  # priced before the statement ran (nightly.py): nothing is sent
    else:
        _send(state, writer, batch.misses)
    failed, skipped = _gather(state, keys, batch)
    writer.write(
        {"kind": "tally", "handle": handle, "function": call.task.function, "model": call.task.model,
         "rows": batch.rows, "hits": batch.hits, "failed": failed, "skipped": skipped,
         "batch": _batch_id(handle, keys), "created_at": now()}
    )  # fmt: skip
    writer.close()
    if failed and state.fail_fast and state.preview_limit is None:
        query = errors_query(config.schema, call.invocation_id, call.node_id)
        raise RowFailuresError(
            f"{rows_failed(call.node_id, failed, query)} Nothing was appended to the incremental model; its "
            "paid answers are kept for the next run."
        )
    return batch.results


@dataclass
class _Batch:
    """One Arrow batch's rows, sorted: the answers known so far, and the texts to send."""

    results: list[str | None]
    rows: int = 0  # rows with a text
    hits: int = 0  # of which answered without a request of their own
    misses: dict[str, str] = field(default_factory=dict)  # key -> text, to send
    waiting: list[int] = field(default_factory=list)  # rows answered (or failed) by a request


def _sort(state: _CallState, keys: list[str | None], texts: list[str | None], cached: list[str | None]) -> _Batch:
    """Each row's cached or already known answer; the distinct texts still to send (a preview's at most
    its limit per process)."""
    batch = _Batch([None] * len(keys))
    with state.lock:
        for i, (key, text, answer) in enumerate(zip(keys, texts, cached, strict=True)):
            if text is None or key is None:
                continue
            batch.rows += 1
            if answer is not None:
                batch.results[i], batch.hits = answer, batch.hits + 1
            elif key in state.unclaimed:  # its batch line was this call's request: no hit
                batch.results[i] = state.answers[key]
                state.unclaimed.discard(key)
            elif key in state.answers:
                batch.results[i], batch.hits = state.answers[key], batch.hits + 1
            else:
                if key not in state.failed and key not in state.skipped:
                    batch.misses.setdefault(key, text)
                batch.waiting.append(i)
        if state.preview_limit is not None:
            room = max(0, state.preview_limit - state.sent)
            batch.misses = dict(list(batch.misses.items())[:room])
            state.sent += len(batch.misses)
    return batch


def _send(state: _CallState, writer: LineWriter, misses: dict[str, str]) -> None:
    """Send the texts (a too-long one fails without a request); each outcome is staged as it arrives."""
    call, config = state.call, state.config
    requests: list[Request] = []
    for key, text in misses.items():
        if len(text) > config.max_input_chars:  # on_long_input: fail (truncation happens in SQL)
            message = (
                f"the input has {len(text)} characters, more than max_input_chars={config.max_input_chars}; "
                "raise max_input_chars or set on_long_input: truncate"
            )
            _stage(state, writer, Outcome(key, error_kind="input_too_long", error=message), text)
        else:
            requests.append(Request(key, call.task, text, state.budget, call.rows_per_request))
    if requests:
        engine, _ = _WORKER.engine(config)
        engine.run(requests, lambda outcome: _stage(state, writer, outcome, misses.get(outcome.key, "")))


def _gather(state: _CallState, keys: list[str | None], batch: _Batch) -> tuple[int, int]:
    """The answers of the waiting rows; returns how many failed and how many were skipped."""
    failed = skipped = 0
    sent: set[str] = set()
    with state.lock:
        for i in batch.waiting:
            key = keys[i]
            assert key is not None
            if key in state.answers:
                batch.results[i] = state.answers[key]
                if key in batch.misses and key not in sent:
                    sent.add(key)  # the row its request was sent for is no hit
                else:
                    batch.hits += 1
            elif key in state.failed:
                failed += 1
            else:
                skipped += 1  # a preview's row past its limit, the budget's, a dry run's: not sent
    return failed, skipped


def _batch_id(handle: str, keys: list[str | None]) -> str:
    return sha256_hex(handle + "\n" + "\n".join(k or "" for k in keys))


def _stage(state: _CallState, writer: LineWriter, outcome: Outcome, text: str) -> None:
    """On the engine's thread: stage the answer (grounded where the engine checked it) or the failure,
    and remember it."""
    call = state.call
    budget = outcome.result is None and outcome.error_kind == "budget"
    line: dict[str, Any] = {
        "kind": "answer" if outcome.result is not None else "budget" if budget else "error",
        "handle": call.handle,
        "function": call.task.function,
        "model": call.task.model,
        "key": outcome.key,
        "result": outcome.result,
        "prompt_tokens": outcome.usage.prompt_tokens,
        "completion_tokens": outcome.usage.completion_tokens,
        "cached_tokens": outcome.usage.cached_tokens,
        "cost_usd": outcome.cost_usd,
        "priced": outcome.cost_usd is not None,
        "requests": outcome.requests,
        "retries": outcome.retry_requests,
        "rate_limited": outcome.rate_limited,
        "ungrounded": outcome.ungrounded,
        "attempts": outcome.attempts,
        "batch_answers": int(isinstance(outcome, BatchOutcome) and outcome.ok),
        "created_at": now(),
    }
    if outcome.result is None:
        line.update(error_kind=outcome.error_kind or "retries_exhausted", message=outcome.error or "")
        line.update(input_preview=text[:200])
    writer.write(line)
    with state.lock:
        if outcome.result is not None:
            state.answers[outcome.key] = outcome.result
            if line["batch_answers"]:
                state.unclaimed.add(outcome.key)
        elif budget:
            state.skipped.add(outcome.key)
        else:
            state.failed.add(outcome.key)


# The handle the pre-hook's pass over the model's SQL gives a call in batch mode or a dry run.
WANTED = "wanted:"


def want(
    root: Path, handle: str, keys: list[str | None], texts: list[str | None], cached: list[str | None]
) -> list[str | None]:
    """The pre-hook's pass: stage the batch's distinct uncached texts for the call, answer nothing."""
    writer = LineWriter(wanted_dir(root, handle))
    seen: set[str] = set()
    for key, text, answer in zip(keys, texts, cached, strict=True):
        if key is not None and text is not None and answer is None and key not in seen:
            seen.add(key)
            writer.write({"key": key, "text": text})
    writer.close()
    return [None] * len(keys)


def _dry(state: _CallState, batch: _Batch) -> None:
    """A dry run sends nothing; an incremental model with rows to answer stops its statement, since
    Spark has no rollback and NULLs appended to it would never be revisited."""
    if batch.misses and state.incremental and state.preview_limit is None:
        raise DryRunStop(
            f"dbt_llm: dry run: {state.call.node_id} is incremental and has rows a real run would send "
            "(priced in llm_audit); its statement was stopped so that no NULL is appended (Spark has no "
            "rollback). Models downstream read its previous state."
        )
    batch.misses = {}
