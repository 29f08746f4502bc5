"""`max_cost_usd` on Spark: a cap every Python worker of an invocation draws on, through a small ledger
file in the staging directory (spent and reserved USD), read and written under an exclusive flock.

Each request reserves its estimated cost before it is sent, as on DuckDB (engine/budget.py), so the
spend stops within about one request per task slot of the cap. A worker waits for room only while it has
reservations of its own in flight (their settling wakes it); room held by other workers' requests counts
as spent, so a cap may stop a little early, never late. A killed worker's reservations stay held until
the invocation ends: the cap errs on the safe side."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator
from pathlib import Path

from ..engine.budget import Budget, Verdict
from .staging import ledger_path


class LedgerBudget(Budget):
    def __init__(self, cap_usd: float | None, path: Path, parent: Budget | None = None) -> None:
        super().__init__(cap_usd, parent)
        self._path = path
        self._mine = 0  # reservations of this process not settled yet

    @property
    def spent_usd(self) -> float:
        with self._ledger() as ledger:
            return float(ledger["spent"])

    def reserve(self, cost_usd: float) -> Verdict:
        with self._ledger() as ledger:
            spent, reserved = float(ledger["spent"]), float(ledger["reserved"])
            if self.cap_usd is not None and spent + cost_usd > self.cap_usd:
                return "over"
            if self.cap_usd is not None and spent + reserved + cost_usd > self.cap_usd:
                return "wait" if self._mine > 0 else "over"
            ledger["reserved"] = reserved + cost_usd
            self._mine += 1
        verdict = self.parent.reserve(cost_usd) if self.parent is not None else "reserved"
        if verdict != "reserved":
            self._give_back(cost_usd, 0.0)
        return verdict

    def settle(self, reserved_usd: float, cost_usd: float) -> None:
        self._give_back(reserved_usd, cost_usd)
        if self.parent is not None:
            self.parent.settle(reserved_usd, cost_usd)

    def _give_back(self, reserved_usd: float, cost_usd: float) -> None:
        with self._ledger() as ledger:
            ledger["reserved"] = max(0.0, float(ledger["reserved"]) - reserved_usd)
            ledger["spent"] = float(ledger["spent"]) + cost_usd
            self._mine = max(0, self._mine - 1)  # a reservation of another process settled here counts 0

    @contextlib.contextmanager
    def _ledger(self) -> Iterator[dict[str, float]]:
        """The ledger, locked; what the block leaves in it is written back (fsynced) before the unlock."""
        self._path.parent.mkdir(parents=True, exist_ok=True)
        with open(self._path, "a+", encoding="utf-8") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                handle.seek(0)
                raw = handle.read()
                ledger: dict[str, float] = json.loads(raw) if raw.strip() else {"spent": 0.0, "reserved": 0.0}
                before = dict(ledger)
                yield ledger
                if ledger != before:
                    handle.seek(0)
                    handle.truncate()
                    handle.write(json.dumps(ledger))
                    handle.flush()
                    os.fsync(handle.fileno())
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)


def spark_budget(root: Path, invocation_id: str, node_id: str, caps: tuple[float | None, float | None]) -> Budget:
    """The budget of one call: `caps` are the invocation's max_cost_usd (the config) and the model's own
    (its meta); without either, an uncapped budget of the process."""
    invocation_cap, model_cap = caps
    if invocation_cap is None and model_cap is None:
        return Budget(None)
    invocation = LedgerBudget(invocation_cap, ledger_path(root, invocation_id, ""))
    if model_cap is None:
        return invocation
    return LedgerBudget(model_cap, ledger_path(root, invocation_id, node_id), parent=invocation)
