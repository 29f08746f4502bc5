"""One macro call as planned at compile time: what the DuckDB runtime and Spark's workers both answer."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from ..config import Mode, OnError
from ..functions.tasks import Task
from .attribution import Attribution
from .cascade import Cascade


@dataclass(frozen=True)
class Call:
    """One macro call in one model (one microbatch batch, for those) of one invocation."""

    handle: str
    task: Task
    invocation_id: str
    node_id: str
    batch_id: str = ""
    command: str = "run"  # dbt's command (flags.WHICH), as the audit records it
    # Whether that command runs the model's post-hook, which settles and judges the call (the macro
    # _llm_hooked_commands says); otherwise the call is a preview.
    hooked: bool = True
    on_error: OnError = "fail"
    dry_run: bool = False
    max_cost_usd: float | None = None  # the model's own cap, under the invocation's
    mode: Mode = "realtime"
    rows_per_request: int = 1  # texts packed in one request (packing.py)
    recheck: int = 0  # cached rows re-asked after the run, to measure agreement (duckdb/rechecks.py)
    text_sql: str = ""  # the macro's `text` argument, the SQL expression each row's text comes from
    compare: int = 0  # a dry run: rows of the model the new spec answers, to compare with the last run's
    with_confidence: bool = False  # the SQL gets {<answer>, confidence}: no part of the cache key

    golden: str = ""  # golden=: the relation of the golden set answered after the model's rows (no part of the key)
    cascade: Cascade | None = None  # escalate_to=: the rows below the threshold asked of a larger model
    attribution: Attribution = field(default_factory=Attribution)  # owner, group, tags, meta: for its audit rows

    def shown(self, result: str | None, confidence: float | None) -> str | None:
        """An answer as the call's SQL reads it: the cached JSON, or with_confidence's
        {label|value: answer, confidence: ...} (the form _llm_resolve_sql builds for cached rows)."""
        choices = self.task.choices
        if result is None or not self.with_confidence or choices is None:
            return result
        return json.dumps({choices.name: json.loads(result)[choices.key], "confidence": confidence})

    @property
    def where(self) -> str:
        return f"batch {self.batch_id} of {self.node_id}" if self.batch_id else self.node_id
