"""A cascade in batch mode runs as two stages. Stage 1: the first model's uncached texts go in its batch
job (dbt_llm_cascade_submit, as a plain call's do). Stage 2: once that job is collected (its answers
cached), the texts it answered below the threshold (or of unknown confidence), and those whose cached
first answer was below it already, go to escalate_to as a second job, sent by the first chunk that gets
there. Each job is recorded in llm_batch_jobs the moment it exists (BatchMode.start), so a run killed
in either stage leaves a job the next run collects instead of sending its texts again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .sender import Sender
from .writer import Writer

if TYPE_CHECKING:
    from .cascade import CascadeCall


@dataclass(eq=False)
class Stages:
    """What the second stage is made of, gathered by dbt_llm_cascade_submit before the first row resolves:
    the texts asked of the first model (by its key) and those of a cached first answer below the
    threshold (by escalate_to's key). Its lock is held while the second job is sent."""

    first: dict[str, str] = field(default_factory=dict)
    below: dict[str, str] = field(default_factory=dict)
    sent: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    def offer(self, first: dict[str, str], below: dict[str, str]) -> None:
        with self.lock:
            self.first.update(first)
            self.below.update(below)


def second_stage(cascade: CascadeCall, sender: Sender, writer: Writer, log: Callable[[str], None]) -> None:
    """Sends the second job once the first model's jobs were collected; a chunk that comes later waits
    here until it exists, so none of its escalated rows is sent realtime."""
    stages = cascade.stages
    if stages is None:
        return
    with stages.lock:
        if stages.sent:
            return
        stages.sent = True
        texts = dict(stages.below)
        for key, text in stages.first.items():
            answer = cascade.first.invocation.answer_of(key)  # a row the first model failed is not escalated
            if answer is not None and cascade.below(key, answer[0]):
                texts[cascade.escalated_key(text)] = text
        stages.first, stages.below = {}, {}
        if not texts:
            return
        # Stage 1's answers are committed first: a run killed from here on finds them in the cache.
        writer.commit_cache()
        call, large = cascade.first.call, cascade.escalated.call.task.model
        threshold = "?" if cascade.threshold is None else f"{cascade.threshold:.4g}"
        log(
            f"dbt_llm cascade: {call.where} llm_{call.task.function}: {len(texts)} text(s) below "
            f"escalate_below={threshold} (or of unknown confidence) go to {large} in a second batch job"
        )
        sender.send(cascade.escalated, texts, prefetch=True)


__all__ = ["Stages", "second_stage"]
