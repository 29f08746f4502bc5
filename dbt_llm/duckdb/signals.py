"""Ctrl-C and SIGTERM: the engine stops sending at once, then dbt ends the run as on its own Ctrl-C
(it cancels the queries, waits for its threads, prints the run's end) but with a message where it
would print a KeyboardInterrupt traceback. SIGTERM, which would kill the process unsettled, takes
the same path. Handlers can be installed from the main thread only; another handler is chained."""

from __future__ import annotations

import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

from dbt_common.exceptions import DbtBaseException

from ..engine.stop import GRACE_SECONDS

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_stops: list[weakref.WeakMethod[Callable[[], None]]] = []  # each plugin's runtime.cancel
_previous: dict[int, Any] = {}


class RunInterrupted(DbtBaseException, KeyboardInterrupt):
    """A KeyboardInterrupt for dbt's cancel path; a dbt error for its report (a message, no traceback)."""


def on_signal(stop: Callable[[], None]) -> None:
    """Call `stop` (a bound method, held weakly) on SIGINT and SIGTERM, once `install` ran."""
    _stops[:] = [ref for ref in _stops if ref() is not None]
    if all(ref() != stop for ref in _stops):
        _stops.append(weakref.WeakMethod(stop))


def install() -> None:
    """Install the handlers if on the main thread (dbt opens its connection, and so builds the plugin, on
    another: the runtime calls this again from a dbt event fired on the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in _SIGNALS:
        previous = signal.getsignal(sig)
        if previous is _on_signal or previous == signal.SIG_IGN:
            continue  # installed already, or the signal is meant to be ignored (nohup)
        _previous[sig] = previous
        signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    for ref in _stops:
        stop = ref()
        if stop is not None:  # off the main thread: it takes locks the interrupted code may hold
            threading.Thread(target=stop, name="dbt-llm-stop", daemon=True).start()
    previous = _previous.get(signum)
    if callable(previous) and previous is not signal.default_int_handler:
        previous(signum, frame)
        return
    name = signal.Signals(signum).name
    raise RunInterrupted(
        f"dbt_llm: {name} received: the run was cancelled. No LLM request was sent after it; requests in "
        f"flight had {GRACE_SECONDS:g} s to land. Answers paid for are cached and the run's llm_audit rows say "
        "`cancelled`: the next run sends only the rest."
    )
