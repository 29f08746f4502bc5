"""`dbt-llm explain`: the request a row's text makes for a planned call, built by the code that sends it
(the task's messages and schema, chat_body, the cache key), with nothing sent."""

from __future__ import annotations

from typing import Any

from ..functions.tasks import Task, cache_key
from ..providers.openai import chat_body
from .call import Call

# Shown in place of a row's text when none is given: its key would be of no row, so none is printed.
PLACEHOLDER = "<the text of a row: pass --text '...'>"
_BLANKS = " \t\n\r"  # what the call's SQL trims (_llm_key_sql)


def sent_text(text: str, truncate_at: int | None) -> str | None:
    """A row's text as the call's SQL sends it: trimmed, NULL when blank, cut at truncate_at."""
    value = text.strip(_BLANKS)
    if not value:
        return None
    return value[:truncate_at] if truncate_at is not None else value


def request_body(task: Task, text: str) -> tuple[str, dict[str, Any]]:
    """The route and JSON body of the one request `text` makes alone (no retry, no pack)."""
    if task.embeds:
        body: dict[str, Any] = {"model": task.model, "input": [text], "encoding_format": "float"}
        if task.dimensions is not None:
            body["dimensions"] = task.dimensions
        return "/embeddings", body
    messages = [dict(m) for m in task.messages(text)]
    body = chat_body(task.model, messages, task.response_format(), task.max_tokens, task.temperature, task.top_logprobs)
    return "/chat/completions", body


def explain_call(call: Call, text: str | None, truncate_at: int | None) -> dict[str, Any]:
    """What one call of a model asks for a row's text (None: a placeholder, and no key)."""
    task = call.task
    explained: dict[str, Any] = {
        "call": task.where,
        "function": task.function,
        "model": task.model,
        "spec_hash": task.spec_hash,
        "rows_per_request": call.rows_per_request,
        "mode": call.mode,
    }
    if task.kind.across_rows:
        explained["note"] = (
            "llm_agg asks a tree of partial answers per group of rows, not one request per row: explain does "
            "not show it."
        )
        return explained
    if text is None:
        explained.update(text=PLACEHOLDER, key=None)
        shown = PLACEHOLDER
    else:
        value = sent_text(text, truncate_at)
        if value is None:
            explained.update(text=None, key=None, note="a blank text is NULL: no request, no cache entry")
            return explained
        explained.update(text=value, key=cache_key(task.spec_hash, value))
        shown = value
    explained["route"], explained["body"] = request_body(task, shown)
    if call.cascade is not None:
        route, body = request_body(call.cascade.large, shown)
        explained["escalated"] = {
            "model": call.cascade.large.model,
            "below": "auto" if call.cascade.auto else call.cascade.threshold,
            "key": None if text is None else cache_key(call.cascade.large.spec_hash, shown),
            "route": route,
            "body": body,
        }
    return explained
