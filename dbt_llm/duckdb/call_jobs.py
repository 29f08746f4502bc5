"""The batch jobs of one call in batch mode."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from ..batch.lines import BatchRecord
from ..batch.reserve import Held
from ..engine import Outcome, Request
from ..errors import DbtLlmError


@dataclass(eq=False)
class CallJobs:
    """The batch jobs of one call, the requests they answer, and the outcomes no row claimed yet.
    Its lock is held while the jobs are sent or collected."""

    records: list[BatchRecord] = field(default_factory=list)
    requests: dict[str, Request] = field(default_factory=dict)
    held: Held = field(default_factory=Held)  # estimated cost held against the budget
    outcomes: dict[str, Outcome] = field(default_factory=dict)  # not claimed by a row yet
    final: dict[str, Outcome] = field(default_factory=dict)  # every final outcome, for calls that borrow it
    borrowed: dict[str, CallJobs] = field(default_factory=dict)  # key -> the jobs of the call that carries it
    collected: bool = False
    pending_error: DbtLlmError | None = None  # the jobs outlived batch_timeout
    done: threading.Event = field(default_factory=threading.Event)  # collected, or given up
    lock: threading.Lock = field(default_factory=threading.Lock)

    def covers(self, key: str) -> bool:
        """A job of this call, or of the call it borrows from, answers the key."""
        return key in self.requests or key in self.borrowed

    def claim(self, keys: list[str]) -> dict[str, Outcome]:
        """The outcomes of these keys that no row claimed yet."""
        return {key: self.outcomes.pop(key) for key in keys if key in self.outcomes}
