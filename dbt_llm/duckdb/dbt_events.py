"""What dbt tells about a node's end: the one signal that a model's statement is over when no
post-hook runs (a `dbt show` preview, a model whose SQL failed, a microbatch batch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def watch(callback: Callable[[Any], None]) -> None:
    """Register `callback` (a bound method) with dbt's event manager. dbt replaces its callbacks
    at the start of every invocation, so this is called whenever a model registers a call; a
    callback already registered is not added twice (bound methods of one object compare equal)."""
    try:
        from dbt_common.events.event_manager_client import get_event_manager
    except ImportError:  # not inside dbt
        return
    manager = get_event_manager()
    if callback not in getattr(manager, "callbacks", ()):
        manager.add_callback(callback)


def node_finished(msg: Any) -> tuple[str, bool] | None:
    """(unique_id, failed) when `msg` is dbt's NodeFinished event, else None. It is fired on the
    thread that ran the node, right after the node's last statement."""
    if msg.info.name != "NodeFinished":
        return None
    status = str(msg.data.run_result.status).lower()
    return msg.data.node_info.unique_id, status in ("error", "fail", "skipped")


def current_invocation_id() -> str | None:
    """The id of the dbt invocation running in this process (the macros' `invocation_id`)."""
    try:
        from dbt_common.invocation import get_invocation_id
    except ImportError:  # not inside dbt
        return None
    return get_invocation_id()


def cancelling(msg: Any) -> bool:
    """dbt cancels its open queries (its Ctrl-C path, or fail-fast): LogCancelLine, once per connection."""
    return bool(msg.info.name == "LogCancelLine")


def command_completed(msg: Any) -> bool:
    """dbt's CommandCompleted: the command (run, build, ...) has ended, its hooks and results written."""
    return bool(msg.info.name == "CommandCompleted")
