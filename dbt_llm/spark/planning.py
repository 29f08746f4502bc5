"""The SQL functions the macros call when a model compiles and in its post-hook: plan a call (config,
arguments, what Spark cannot do yet), the merge plan of a model's staging, the merge lock, discarding
merged staging. They run in Spark's Python workers like the answers do (see worker.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..calls.call import Call
from ..calls.plan import plan_call
from ..calls.rows import now
from ..calls.verdict import budget_error
from ..config import LlmConfig, parse_config
from ..errors import ConfigError, SpecError
from ..pricing import PriceTable
from .ledger import spark_budget
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
            "dry_run": call.dry_run,
            "created_at": now(),
            "owner": call.attribution.owner,
            "group_name": call.attribution.group_name,
            "tags": list(call.attribution.tags),
            "meta": call.attribution.meta,
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
    if call.compare:
        raise SpecError(f"{where}: compares are not available on Spark yet; run without `dbt_llm_compare`.")
    if call.batch_id:
        raise SpecError(f"{where}: microbatch models are not available on Spark yet; use incremental or table.")
    if call.golden:
        raise SpecError(
            f"{where}: golden sets are not available on Spark yet; remove `golden=` from the macro call "
            "(score the model on dbt-duckdb)."
        )
    if call.recheck:
        raise SpecError(
            f"{where}: rechecks are not available on Spark yet; run without `dbt_llm_recheck` "
            "(and remove `recheck` from the config and the model's meta)."
        )


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
            "budget_message": _budget_message(Path(root), node),
            "statements": merge.statements,
            "failures_query": merge.failures_query,
            "failed_message": merge.failed_message,
            "drop_views": merge.drop_views,
            "staging": str(node.path),
        }
    )


def _budget_message(root: Path, node: NodeDir) -> str | None:
    """Texts max_cost_usd left unsent fail the model with `budget`, saying what was spent of which cap."""
    lines = list(staged_lines(node.path))
    skipped = len({line.get("key") for line in lines if line.get("kind") == "budget"})
    handle = next((str(line["handle"]) for line in lines if line.get("kind") == "call"), None)
    if not skipped or handle is None:
        return None
    stored = read_call(root, handle)
    config = spark_config(stored["config"])
    call = plan_call(stored["args"], node.invocation_id, config, PriceTable(config.prices))
    budget = spark_budget(root, call.invocation_id, call.node_id, (config.max_cost_usd, call.max_cost_usd))
    return str(budget_error(call.where, budget, skipped))


def lock(owner: str, root: str) -> str:
    """dbt_llm_lock(owner): wait for the merge lock (see staging.acquire_merge_lock)."""
    acquire_merge_lock(Path(root), owner)
    return owner


def unlock(owner: str, root: str) -> str:
    release_merge_lock(Path(root), owner)
    return owner
