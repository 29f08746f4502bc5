"""BatchRunner.follow, the one batch loop: what BatchRunner.run drives after submitting, and what
batch mode drives over the jobs of a call (those it sent, and those an earlier run left). Each round
tells the caller which batches ended; a caller that raises there stops the loop."""

from __future__ import annotations

import pytest
from test_batch import Clock, FakeBatchAPI, label, request, runner

from dbt_llm.batch.lines import BatchOutcome, BatchRecord, CollectResult
from dbt_llm.batch.runner import RunHooks
from dbt_llm.engine import Request


def test_follow_collects_batches_submitted_earlier_and_reports_each_round() -> None:
    fake = FakeBatchAPI(fate=lambda text, n: "invalid" if text == "a bug" and n == 1 else "ok")
    clock = Clock()
    reqs = [request(t) for t in ("a bug", "b billing")]
    records = runner(fake, clock).submit(reqs, lambda record: None)  # a run that was killed after this
    created: list[BatchRecord] = []
    rounds: list[list[str]] = []
    seen: list[BatchOutcome] = []
    hooks = RunHooks(
        on_created=created.append,
        on_outcome=seen.append,
        on_round=lambda collected: rounds.append([r.batch_id for r in collected.finished]),
    )
    result = runner(fake, clock).follow(
        records, {r.key: r for r in reqs}, deadline=clock() + 3600, max_attempts=3, hooks=hooks
    )
    assert rounds == [["batch_1"], ["batch_2"]] and [r.batch_id for r in created] == ["batch_2"]
    assert sorted(label(o) for o in seen) == ["billing", "bug"] and seen == result.outcomes
    assert not result.retry and not result.pending


class Stop(Exception):
    pass


def test_a_round_that_raises_stops_the_loop_before_the_fallback() -> None:
    fake = FakeBatchAPI(fate=lambda text, n: "invalid")
    clock = Clock()
    reqs = [request("a bug")]
    handed: list[list[Request]] = []

    def stop(collected: CollectResult) -> None:
        assert [r.request.key for r in collected.retry] == [reqs[0].key]
        raise Stop

    records = runner(fake, clock).submit(reqs, lambda record: None)
    hooks = RunHooks(on_created=lambda record: None, on_outcome=lambda o: None, fallback=handed.append, on_round=stop)
    with pytest.raises(Stop):
        runner(fake, clock).follow(records, {reqs[0].key: reqs[0]}, deadline=3600, max_attempts=3, hooks=hooks)
    assert handed == [] and len(fake.batches) == 1
