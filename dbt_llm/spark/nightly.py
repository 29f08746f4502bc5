"""Batch mode and dry runs on Spark, run by the model's pre-hook before its statement (_llm_spark_before).

Batch jobs cannot be sent from the executors' tasks: a model's rows fall in many partitions that run in
waves, and each wave would wait for its own job. So the pre-hook first runs the model's own SQL with its
calls renamed (worker.WANTED): each distinct uncached text is staged under `wanted/`, nothing is sent.
Then `submit` sends those texts as jobs (each recorded in a job file the moment it exists, and in
llm_batch_jobs by the macro before the wait), and `collect` waits for them up to batch_timeout, staging
each answer as realtime answers are. The statement then runs and finds every answer staged: it sends
nothing. A dry run prices the wanted texts instead (`submit` does), and its statement sends nothing.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from ..batch.lines import BatchRecord, CollectResult
from ..batch.reserve import Held, reserve_jobs
from ..batch.runner import RunHooks, exhausted
from ..batch.wiring import pending_error, runner_for
from ..calls.estimate import estimate
from ..calls.ledger import Ledger, estimate_text
from ..calls.rows import now
from ..engine import Outcome, Request
from ..errors import DbtLlmError
from ..pricing import PriceTable
from .jobs import JobFiles, jobs_merge
from .staging import LineWriter, NodeDir, node_dirs, staged_lines, wanted_dir
from .worker import WANTED, _CallState, _stage, engine_of, state_of


def _handles(root: Path, payload: dict[str, Any]) -> list[str]:
    """The calls of the model that the pre-hook answers: in batch mode or a dry run, run by a command
    that runs hooks (a preview is answered realtime)."""
    handles: list[str] = []
    ids = (str(payload["invocation_id"]), str(payload["node_id"]))
    for found in node_dirs(root):
        node = NodeDir(root, found.schema, *ids)
        if node.path != found.path:
            continue
        for line in staged_lines(node.path):
            if line.get("kind") == "call" and line.get("handle") and line["handle"] not in handles:
                call = state_of(root, str(line["handle"])).call
                if call.hooked and (call.dry_run or call.mode == "batch"):
                    handles.append(str(line["handle"]))
    return handles


def before(payload_json: str, root: str) -> str:
    """dbt_llm_before(payload): the handles the pre-hook renames, and the prefix it renames them with."""
    return json.dumps({"handles": _handles(Path(root), json.loads(payload_json)), "prefix": WANTED})


def _wanted(state: _CallState) -> dict[str, str]:
    """The call's uncached texts the pass over its SQL staged, less those this invocation settled."""
    texts: dict[str, str] = {}
    for line in staged_lines(wanted_dir(state.node.root, state.call.handle)):
        key = str(line["key"])
        if key not in state.answers and key not in state.failed and key not in state.skipped:
            texts.setdefault(key, str(line["text"]))
    return texts


def _requests(state: _CallState, texts: dict[str, str]) -> list[Request]:
    """Too-long inputs are left to the statement, which fails them without a request."""
    call, limit = state.call, state.config.max_input_chars
    return [
        Request(key, call.task, text, state.budget, call.rows_per_request)
        for key, text in texts.items()
        if len(text) <= limit
    ]


def submit(payload_json: str, root: str) -> str:
    """dbt_llm_submit_jobs(payload): per call, a dry run's estimate, or batch mode's new jobs (the texts
    no open job carries, within the budget). Returns the log lines and the SQL that records the jobs."""
    payload = json.loads(payload_json)
    messages: list[str] = []
    schemas: set[str] = set()
    for handle in payload["handles"]:
        state = state_of(Path(root), handle)
        schemas.add(state.config.schema)
        requests = _requests(state, _wanted(state))
        messages.append(_estimate(state, requests) if state.call.dry_run else _send_jobs(state, requests))
    statements = [sql for schema in sorted(schemas) for sql in jobs_merge(Path(root), schema)]
    return json.dumps({"messages": [m for m in messages if m], "statements": statements})


def _estimate(state: _CallState, requests: list[Request]) -> str:
    call = state.call
    price = PriceTable(state.config.prices).price(call.task.model, batch=call.mode == "batch")
    guess = estimate(requests, price, state.config.max_input_chars)
    writer = LineWriter(state.node.path)
    writer.write(
        {"kind": "estimate", "handle": call.handle, "function": call.task.function, "model": call.task.model,
         "est_requests": guess.requests, "est_prompt_tokens": guess.prompt_tokens,
         "est_completion_tokens": guess.completion_tokens, "est_cost_usd": guess.cost_usd, "created_at": now()}
    )  # fmt: skip
    writer.close()
    ledger = Ledger(call.invocation_id, call.node_id, "", call.task.function, call.task.model, "", call.command)
    ledger.est_requests, ledger.est_prompt_tokens = guess.requests, guess.prompt_tokens
    ledger.est_completion_tokens, ledger.est_cost_usd = guess.completion_tokens, guess.cost_usd
    return f"dry run: {call.where}: {estimate_text(ledger)}; nothing was sent"


def _send_jobs(state: _CallState, requests: list[Request]) -> str:
    call, config = state.call, state.config
    jobs = JobFiles(state.node.root, config.schema)
    covered = {key for record in jobs.open_jobs({r.key for r in requests}, config.provider) for key in record.keys}
    prices = PriceTable(config.prices)
    held = reserve_jobs(
        [r for r in requests if r.key not in covered], prices.price(call.task.model, batch=True), config.max_input_chars
    )
    writer = LineWriter(state.node.path)
    for request in held.refused:
        _stage(state, writer, Outcome(request.key, error_kind="budget", error="not sent: max_cost_usd was reached"), "")
    writer.close()
    _save_held(state, held)
    records = []
    if held.sendable:
        records = runner_for(config, prices).submit(
            held.sendable, _recorder(state, jobs), metadata={"dbt_node": call.node_id[:500]}
        )
    if not records and not covered:
        return ""
    return (
        f"{call.where} llm_{call.task.function}: {len(records)} batch job(s) sent "
        f"({', '.join(f'{r.batch_id}: {len(r.keys)} requests' for r in records) or 'none'}), "
        f"{len(covered)} text(s) in jobs an earlier run left; recorded in llm_batch_jobs; "
        f"waiting up to batch_timeout={config.batch_timeout:g}s"
    )


def _recorder(state: _CallState, jobs: JobFiles) -> Any:
    call, ids = state.call, (state.call.invocation_id, state.call.node_id)

    def created(record: BatchRecord) -> None:
        jobs.created(
            record, provider=state.config.provider, model=call.task.model, function=call.task.function, ids=ids
        )

    return created


def _held_path(state: _CallState) -> Path:
    return wanted_dir(state.node.root, state.call.handle) / "held.json"


def _save_held(state: _CallState, held: Held) -> None:
    """What the jobs hold of the budget, for `collect` (which may run in another worker process)."""
    path = _held_path(state)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(held.reserved), encoding="utf-8")


def collect(payload_json: str, root: str) -> str:
    """dbt_llm_collect_jobs(payload): wait for each call's jobs (up to batch_timeout), stage every answer
    and failure; lines without a valid answer follow `batch_fallback`. Returns the SQL that records the
    collected jobs, the job files to discard after it ran, and an error while a job has not ended."""
    payload = json.loads(payload_json)
    schemas: set[str] = set()
    error: str | None = None
    for handle in payload["handles"]:
        state = state_of(Path(root), handle)
        schemas.add(state.config.schema)
        if state.call.dry_run:
            continue
        try:
            _collect_call(state)
        except DbtLlmError as exc:
            error = error or str(exc)
    statements = [sql for schema in sorted(schemas) for sql in jobs_merge(Path(root), schema)]
    collected = [job for schema in sorted(schemas) for job in JobFiles(Path(root), schema).collected_ids()]
    return json.dumps({"statements": statements, "collected": collected, "error": error})


def _collect_call(state: _CallState) -> None:
    call, config = state.call, state.config
    texts = _wanted(state)
    requests = {request.key: request for request in _requests(state, texts)}
    jobs = JobFiles(state.node.root, config.schema)
    records = jobs.open_jobs(set(requests), config.provider)
    if not records:
        return
    held = Held(reserved=json.loads(_held_path(state).read_text()) if _held_path(state).exists() else {})
    writer = LineWriter(state.node.path)

    def settled(outcome: Outcome) -> None:
        held.release(requests[outcome.key], outcome.cost_usd or 0.0)
        _stage(state, writer, outcome, texts.get(outcome.key, ""))

    def realtime(retried: list[Request]) -> None:
        engine = engine_of(config)
        engine.run(retried, lambda outcome: _stage(state, writer, outcome, texts.get(outcome.key, "")))

    def round_(collected: CollectResult) -> None:
        for record in collected.finished:
            failed = sum(1 for key in record.keys if key in requests and key not in state.answers)
            jobs.finished(record, completed=len(record.keys) - failed, failed=failed)
        if collected.pending:
            raise pending_error(call.where, config.batch_timeout, collected.pending)
        for retry in collected.retry if config.batch_fallback == "realtime" else []:
            _spend(state, writer, retry.so_far)  # what its batch lines cost, whatever the realtime answer
            held.release(retry.request, retry.so_far.cost_usd or 0.0)

    hooks = RunHooks(_recorder(state, jobs), settled, realtime if config.batch_fallback == "realtime" else None, round_)
    try:
        result = runner_for(config, PriceTable(config.prices)).follow(
            records, requests, deadline=time.monotonic() + config.batch_timeout, max_attempts=config.max_attempts,
            hooks=hooks, metadata={"dbt_node": call.node_id[:500]},
        )  # fmt: skip
        for retry in result.retry:
            settled(exhausted(retry))
    finally:
        writer.close()


def _spend(state: _CallState, writer: LineWriter, spent: Outcome) -> None:
    """A batch line that got no valid answer was paid for: audited (not cached) before the realtime retry."""
    call = state.call
    writer.write(
        {"kind": "spend", "handle": call.handle, "function": call.task.function, "model": call.task.model,
         "key": spent.key, "prompt_tokens": spent.usage.prompt_tokens,
         "completion_tokens": spent.usage.completion_tokens, "cached_tokens": spent.usage.cached_tokens,
         "cost_usd": spent.cost_usd, "priced": spent.cost_usd is not None, "requests": spent.requests,
         "created_at": now()}
    )  # fmt: skip


def discard_jobs(payload_json: str, root: str) -> str:
    """dbt_llm_discard_jobs(job ids): the files of collected jobs, once llm_batch_jobs holds them."""
    job_ids = [str(job) for job in json.loads(payload_json)]
    JobFiles(Path(root), "").discard(job_ids)
    return str(len(job_ids))
