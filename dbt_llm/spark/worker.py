"""What runs in Spark's Python worker processes: preparing a macro call, answering a batch of rows.

Nothing here imports pyspark or pandas (udfs.py wraps these functions), so it is tested as plain
Python. Each worker process builds one engine per config, lazily, and remembers per call the answers
it got, so a text seen again in a later batch (or a Spark task retried in this process) is not sent
again. Every answer is staged as it arrives (staging.py): what was paid survives a killed executor.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..budget import Budget
from ..calls import plan_call
from ..config import LlmConfig, parse_config
from ..engine import Engine, Outcome, Request
from ..engine_factory import engine_for
from ..errors import ConfigError, RowFailuresError, SpecError
from ..invocation import Call
from ..pricing import PriceTable
from ..providers.factory import build_provider
from ..rows import now
from ..tasks import sha256_hex
from ..verdict import errors_query, rows_failed
from .sql_types import spark_type
from .staging import (
    LineWriter,
    NodeDir,
    acquire_merge_lock,
    node_dirs,
    read_call,
    release_merge_lock,
    staged_lines,
    write_call,
)
from .staging import discard as remove_staged
from .tables import MIGRATIONS_TABLE, migrations, quote
from .tables import merge as merge_sql


def spark_config(values: Any) -> LlmConfig:
    """The dbt var `dbt_llm`, parsed like the dbt-duckdb plugin's config block."""
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ConfigError(f"the dbt var `dbt_llm` must be a mapping of settings; got {values!r}.")
    try:
        config = parse_config(values)
    except ConfigError as exc:
        raise ConfigError(str(exc).replace("dbt_llm.plugin config:", "the dbt var `dbt_llm`:", 1)) from None
    if config.provider == "local":
        raise ConfigError(
            "the dbt var `dbt_llm`: `provider: local` is not available on Spark (each executor would start its "
            "own model). Point `base_url` at an OpenAI-compatible endpoint that serves the model instead."
        )
    if config.max_cost_usd is not None:
        raise ConfigError(
            "the dbt var `dbt_llm`: `max_cost_usd` is not enforced on Spark yet (executors share no budget). "
            "Remove it, or run the model on dbt-duckdb, where it is."
        )
    return config


def prepare(payload_json: str, root: str) -> str:
    """dbt_llm_prepare(payload): plan one macro call when its model compiles. Returns JSON: what the
    macro's SQL needs, or {"error": ...} for dbt to raise at compile time."""
    payload = json.loads(payload_json)
    config_values = payload.pop("config", None)
    try:
        config = spark_config(config_values)
        call = plan_call(payload, str(payload.get("invocation_id")), config, PriceTable(config.prices))
        _refuse_unsupported(call)
    except (ConfigError, SpecError) as exc:
        return json.dumps({"error": str(exc)})
    write_call(Path(root), call.handle, {"args": payload, "config": config_values or {}})
    node = NodeDir(Path(root), config.schema, call.invocation_id, call.node_id)
    writer = LineWriter(node.path)
    writer.write(
        {
            "kind": "call",
            "handle": call.handle,
            "function": call.task.function,
            "model": call.task.model,
            "provider": config.provider,
            "command": call.command,
            "on_error": call.on_error,
            "created_at": now(),
        }
    )
    writer.close()
    schema = quote(config.schema)
    return json.dumps(
        {
            "handle": call.handle,
            "spec_hash": call.task.spec_hash,
            "schema": config.schema,
            "cache_table": f"{schema}.llm_cache",
            "type": spark_type(call.task.schema),
            "truncate_at": config.max_input_chars if config.on_long_input == "truncate" else None,
            "create_schema": [f"create database if not exists {schema}", MIGRATIONS_TABLE.format(s=schema)],
            "migrations_query": f"select `name` from {schema}.llm_migrations",
            "migrations": [{"name": name, "statements": sql} for name, sql in migrations(config.schema)],
            "staging": str(node.path),
        }
    )


def _refuse_unsupported(call: Call) -> None:
    where = f"llm_{call.task.function} in {call.node_id}"
    if call.mode == "batch":
        raise SpecError(f"{where}: batch mode is not available on Spark yet; remove `mode: batch` for this model.")
    if call.dry_run:
        raise SpecError(f"{where}: dry runs are not available on Spark yet; run without `dbt_llm_dry_run`.")
    if call.max_cost_usd is not None:
        raise SpecError(f"{where}: `max_cost_usd` is not enforced on Spark yet; remove it from the model's meta.")
    if call.batch_id:
        raise SpecError(f"{where}: microbatch models are not available on Spark yet; use incremental or table.")


@dataclass
class _CallState:
    """One prepared call in this process: its answers so far and the keys that failed."""

    call: Call
    config: LlmConfig
    node: NodeDir
    answers: dict[str, str] = field(default_factory=dict)
    failed: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)
    # One for the call (no cap on Spark): requests of one budget may share a pack (packing.signature).
    budget: Budget = field(default_factory=lambda: Budget(None))
    # `dbt show --limit N`: Spark runs a whole partition through the UDF even for a LIMIT, so a preview
    # sends at most N texts per worker process; the other rows show NULL and count as skipped.
    preview_limit: int | None = None
    sent: int = 0
    # An incremental model has no rollback on Spark: a batch with failed rows fails the query, so no
    # NULL is appended that a later run would never revisit (a table is rebuilt whole next run anyway).
    fail_fast: bool = False


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
        state.fail_fast = args.get("materialized") == "incremental" and call.on_error == "fail"
        limit = args.get("preview_limit")
        if call.command == "show" and isinstance(limit, int) and limit >= 0:
            state.preview_limit = limit
        # A task Spark runs again (its executor was lost, or a row failed) finds what the first attempt
        # paid for, and does not pay again for a row that failed.
        for line in staged_lines(state.node.path):
            if line.get("handle") != handle or line.get("key") is None:
                continue
            if line.get("kind") == "answer" and line.get("result") is not None:
                state.answers[str(line["key"])] = str(line["result"])
            elif line.get("kind") == "error":
                state.failed.add(str(line["key"]))
        with self._lock:
            return self._calls.setdefault(handle, state)


_WORKER = _Worker()


def answer_batch(
    root: str, handles: list[str | None], keys: list[str | None], texts: list[str | None], cached: list[str | None]
) -> list[str | None]:
    """dbt_llm_answer(handle, key, text, cached): one Arrow batch of a model's rows. A row with a cached
    answer gets it; the other distinct texts are sent (once per process and call), staged as answered,
    and their answers returned. A row that failed gets NULL and a staged error line."""
    handle = next((h for h in handles if h), None)
    if handle is None:
        return [None] * len(keys)
    state = _WORKER.call(Path(root), handle)
    call, config = state.call, state.config
    writer = LineWriter(state.node.path)
    results: list[str | None] = [None] * len(keys)
    rows = hits = 0
    misses: dict[str, str] = {}
    waiting: list[int] = []
    with state.lock:
        for i, (key, text, answer) in enumerate(zip(keys, texts, cached, strict=True)):
            if text is None or key is None:
                continue
            rows += 1
            if answer is not None:
                results[i], hits = answer, hits + 1
            elif key in state.answers:
                results[i], hits = state.answers[key], hits + 1
            elif key not in state.failed:
                misses.setdefault(key, text)
                waiting.append(i)
            else:
                waiting.append(i)
        if state.preview_limit is not None:
            room = max(0, state.preview_limit - state.sent)
            misses = dict(list(misses.items())[:room])
            state.sent += len(misses)
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
    failed = skipped = 0
    sent: set[str] = set()
    with state.lock:
        for i in waiting:
            key = keys[i]
            assert key is not None
            if key in state.answers:
                results[i] = state.answers[key]
                if key in misses and key not in sent:
                    sent.add(key)  # the row its request was sent for is no hit
                else:
                    hits += 1
            elif key in state.failed:
                failed += 1
            else:
                skipped += 1  # a preview's row past its limit: not sent
    writer.write(
        {"kind": "tally", "handle": handle, "function": call.task.function, "model": call.task.model,
         "rows": rows, "hits": hits, "failed": failed, "skipped": skipped, "batch": _batch_id(handle, keys),
         "created_at": now()}
    )  # fmt: skip
    writer.close()
    if failed and state.fail_fast and state.preview_limit is None:
        query = errors_query(config.schema, call.invocation_id, call.node_id)
        raise RowFailuresError(
            f"{rows_failed(call.node_id, failed, query)} Nothing was appended to the incremental model; its "
            "paid answers are kept for the next run."
        )
    return results


def _batch_id(handle: str, keys: list[str | None]) -> str:
    return sha256_hex(handle + "\n" + "\n".join(k or "" for k in keys))


def _stage(state: _CallState, writer: LineWriter, outcome: Outcome, text: str) -> None:
    """On the engine's thread: ground the answer, stage it (or the failure), remember it."""
    call = state.call
    ungrounded = 0
    if outcome.result is not None:
        outcome.result, ungrounded = call.task.ground(outcome.result, text)
    line: dict[str, Any] = {
        "kind": "answer" if outcome.result is not None else "error",
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
        "ungrounded": ungrounded,
        "attempts": outcome.attempts,
        "created_at": now(),
    }
    if outcome.result is None:
        line.update(error_kind=outcome.error_kind or "retries_exhausted", message=outcome.error or "")
        line.update(input_preview=text[:200])
    writer.write(line)
    with state.lock:
        if outcome.result is not None:
            state.answers[outcome.key] = outcome.result
        else:
            state.failed.add(outcome.key)


def discard(path: str) -> str:
    """dbt_llm_discard(path): drop a model's staged lines once merged."""
    remove_staged(Path(path))
    return path


def finish(payload_json: str, root: str) -> str:
    """dbt_llm_finish(payload): in a model's post-hook, the SQL that merges its staged lines into the
    tables, or {} when there is nothing to merge (dbt adds one post-hook per macro call: the first merges)."""
    payload = json.loads(payload_json)
    invocation_id, node_id = str(payload["invocation_id"]), str(payload["node_id"])
    schemas = {n.schema for n in node_dirs(Path(root))}
    candidates = (NodeDir(Path(root), schema, invocation_id, node_id) for schema in sorted(schemas))
    node = next((n for n in candidates if n.path.is_dir()), None)
    if node is None:
        return "{}"
    merge = merge_sql(node, "success")
    return json.dumps(
        {
            "statements": merge.statements,
            "failures_query": merge.failures_query,
            "failed_message": merge.failed_message,
            "drop_views": merge.drop_views,
            "staging": str(node.path),
        }
    )


def lock(owner: str, root: str) -> str:
    """dbt_llm_lock(owner): wait for the merge lock (see staging.acquire_merge_lock)."""
    acquire_merge_lock(Path(root), owner)
    return owner


def unlock(owner: str, root: str) -> str:
    release_merge_lock(Path(root), owner)
    return owner
