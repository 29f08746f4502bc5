"""Spending caps: each request reserves its estimated cost before it is sent, so requests in
flight cannot carry the spend past a cap; only the estimate's error can. A model's own cap
(`meta: {dbt_llm: {max_cost_usd: ...}}`) is a budget whose parent is the invocation's."""

from __future__ import annotations

import threading
from typing import Literal

Verdict = Literal["reserved", "wait", "over"]


class Budget:
    """Shared by every request of one invocation or model (read from any thread, reserved on the
    engine's). A request must fit this budget and its parent's."""

    def __init__(self, cap_usd: float | None, parent: Budget | None = None) -> None:
        self.cap_usd = cap_usd
        self.parent = parent
        self._spent = 0.0
        self._reserved = 0.0
        self._open = 0  # reservations not settled: at 0, `_reserved` is reset so no rounding error lingers
        self._lock = threading.Lock()

    @property
    def spent_usd(self) -> float:
        with self._lock:
            return self._spent

    @property
    def capped(self) -> bool:
        """Whether this budget or a parent has a cap."""
        return self.cap_usd is not None or (self.parent is not None and self.parent.capped)

    def reserve(self, cost_usd: float) -> Verdict:
        verdict = self._reserve_own(cost_usd)
        if verdict != "reserved" or self.parent is None:
            return verdict
        verdict = self.parent.reserve(cost_usd)
        if verdict != "reserved":
            with self._lock:  # give back our part: the parent said no
                self._reserved -= cost_usd
                self._open -= 1
                if not self._open:
                    self._reserved = 0.0
        return verdict

    def _reserve_own(self, cost_usd: float) -> Verdict:
        """`reserved`: send, then `settle`. `over`: the cap does not allow it even when everything in
        flight is settled: do not send. `wait`: it fits only if requests in flight cost less than
        they reserved: ask again once one settles."""
        with self._lock:
            if self.cap_usd is not None and self._spent + cost_usd > self.cap_usd:
                return "over"
            if self.cap_usd is not None and self._spent + self._reserved + cost_usd > self.cap_usd:
                return "wait"
            self._reserved += cost_usd
            self._open += 1
            return "reserved"

    def settle(self, reserved_usd: float, cost_usd: float) -> None:
        """A reserved request is over: it cost `cost_usd` (0 when it got no answer)."""
        with self._lock:
            self._open -= 1
            self._reserved = self._reserved - reserved_usd if self._open else 0.0
            self._spent += cost_usd
        if self.parent is not None:
            self.parent.settle(reserved_usd, cost_usd)
