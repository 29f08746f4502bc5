"""The progress reporter: every few seconds, one log line per model and function still calling."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from ..calls.ledger import Ledger, usd, where_batch


def duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


class ProgressReporter:
    """A daemon thread, started on the first request and stopped with the runtime."""

    def __init__(
        self,
        interval: float,
        running: Callable[[], list[tuple[Ledger, dict[str, Any]]]],
        in_flight: Callable[[str], int],
        log: Callable[[str], None],
        provider_down: Callable[[], str | None] = lambda: None,
    ) -> None:
        self._interval = interval
        self._running = running
        self._in_flight = in_flight
        self._provider_down = provider_down
        self._log = log
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._last: dict[tuple[str, ...], tuple[float, int, int]] = {}

    def start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="dbt-llm-progress", daemon=True)
                self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _loop(self) -> None:
        while not self._stop.wait(self._interval):
            self.report(time.monotonic())

    def report(self, now: float) -> None:
        down = self._provider_down()  # why the provider looks down, if it does
        for lg, row in self._running():
            key = lg.key
            then, calls_then, answered_then = self._last.get(
                key, (now - self._interval, row["api_calls"], row["answered"])
            )
            self._last[key] = (now, row["api_calls"], row["answered"])
            if row["api_calls"] == calls_then and row["answered"] == answered_then and down is None:
                continue
            elapsed = max(now - then, 1e-9)
            rate = (row["api_calls"] - calls_then) / elapsed
            left = row["queued"] - row["answered"]
            done_rate = (row["answered"] - answered_then) / elapsed
            eta = f"ETA {duration(left / done_rate)}" if done_rate > 0 else "ETA unknown"
            cached = row["cache_hits"] - row["reused"]
            failed = f" ({row['failed']} without an answer)" if row["failed"] else ""
            self._log(
                f"{where_batch(lg)} llm_{lg.function}: {row['answered'] - row['failed']}/{row['queued']} texts "
                f"answered{failed}, "
                f"{row['rows']} rows ({cached} cached, {row['reused']} reused), {row['api_calls']} calls, "
                f"{self._in_flight(lg.model)} in flight, {rate:.1f} req/s, {row['rate_limited']} x 429, "
                f"{row['prompt_tokens'] + row['completion_tokens']} tokens, {usd(row['cost_usd'])} so far, {eta}"
                + (
                    f"; the provider is unreachable ({down}): rows wait while a probe request retries with backoff"
                    if down is not None
                    else ""
                )
            )
        live = {lg.key for lg, _ in self._running()}
        self._last = {k: v for k, v in self._last.items() if k in live}
