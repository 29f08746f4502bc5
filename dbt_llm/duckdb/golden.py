"""Golden sets (`golden=ref('golden_tickets')`): after a model's rows ran, its post-hook answers each
golden input through the call's own SQL (`_llm_golden_sql`: the same cache join, keys and engine), under
a live call of its own, and dbt_llm_golden_score scores each answer (functions/golden.py).

The golden call counts into the model's audit row what it pays (requests, tokens, cost, a dry run's
estimate: it shares the row's ledger) and what it scores (golden_rows, golden_correct), never rows: its
inputs are not the model's rows, so they are not in rows, cache_hits, failed_rows or skipped_rows, and a
golden input that fails does not fail the model (its llm_errors row says why; it is not scored)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from ..calls.rows import GoldenResultRow, now
from ..errors import SpecError
from ..functions import golden
from .account import Account, ChunkCounts
from .live_call import LiveCall
from .writer import Writer

GOLDEN_SUFFIX = ":golden"  # a golden call's handle is its macro call's, so suffixed


@dataclass(eq=False)
class GoldenAccount(Account):
    """The account of a golden call: the ledger (and lock) of its macro call's audit row, so what it
    pays is the row's; the rows it answers are not the model's, so they are not counted (a golden input
    without an answer is written to llm_golden_results with a NULL score, and its failure to llm_errors)."""

    def count_rows(self, n: int) -> bool:
        return False  # the audit row is written by the model's own rows

    def count_chunk(self, chunk: ChunkCounts, *, fatal: bool) -> None:
        if fatal:  # the provider or the key stopped it: the model's run stops too
            with self.lock:
                self.ledger.status, self.ledger.stopped = "error", True

    def count_settled(self, failed: int, skipped: int) -> None:
        pass

    def count_golden(self, rows: int, correct: float) -> None:
        with self.lock:
            self.ledger.golden_rows += rows
            self.ledger.golden_correct += correct


def golden_call(live: LiveCall, writer: Writer) -> LiveCall:
    """A live call that answers `live`'s golden set: the same task, budget and audit row. Realtime, even
    in batch mode (a golden set is small, and a post-hook should not wait on a batch job); not a batch of
    a microbatch model (a golden input's failure is no batch's); no recheck."""
    call = dataclasses.replace(
        live.call, handle=live.handle + GOLDEN_SUFFIX, batch_id="", mode="realtime", recheck=0, on_error="null"
    )
    account = GoldenAccount(live.account.ledger, lock=live.account.lock)
    return LiveCall(call, live.invocation, account, writer)


class GoldenSets:
    def __init__(
        self,
        writer: Writer,
        resolve_with: Callable[[], dict[str, object]],
        calls_of: Callable[[str, str], list[LiveCall]],
        add: Callable[[LiveCall], bool],
    ) -> None:
        self._writer = writer
        self._resolve_with = resolve_with  # what the call's SQL also needs: cache_table, truncate_at
        self._calls_of = calls_of  # (invocation_id, node_id): the node's live calls, in the order prepared
        self._add = add  # registers a live call under its handle; False if one is there already

    # -- dbt_llm_golden_calls(invocation_id, node_id): the model's post-hook, once per model --
    def calls(self, invocation_id: str, node_id: str) -> str:
        """The golden calls of the model to answer, each once per run (dbt adds a post-hook per macro
        call; a microbatch model answers its golden sets once, with the last batch's call), as JSON."""
        latest: dict[tuple[str, str], LiveCall] = {}
        for live in self._calls_of(invocation_id, node_id):
            if live.call.golden and not live.handle.endswith(GOLDEN_SUFFIX):
                latest[(live.call.task.spec_hash, live.call.golden)] = live
        planned = []
        for live in latest.values():
            answering = golden_call(live, self._writer)
            if self._add(answering):
                planned.append({**_planned(answering), **self._resolve_with()})
        return json.dumps(planned)

    # -- dbt_llm_golden_score(input, expected, answer, handle): each golden input, in the post-hook --
    def score(self, live: LiveCall, inputs: pa.Array, expected: pa.Array, answers: pa.Array) -> pa.Array:
        """Scores each answer, writes its llm_golden_results row (not in a dry run: nothing was asked),
        counts the scored ones in the audit row; returns the scores (NULL: no answer)."""
        call, account = live.call, live.account
        assert isinstance(account, GoldenAccount)
        rows = zip(inputs.to_pylist(), expected.to_pylist(), answers.to_pylist(), strict=True)
        scores: list[float | None] = []
        scored, correct = 0, 0.0
        for text, wanted, answer in rows:
            if call.dry_run:
                scores.append(None)
                continue
            result = self._score_one(live, wanted, answer, text)
            scores.append(result.score if result else None)
            scored, correct = scored + (result is not None), correct + (result.score if result else 0.0)
            self._writer.put_golden(_result_row(live, text, wanted, result))
        account.count_golden(scored, correct)
        if account.ledger.closed:  # a microbatch batch settled already: its row is written again
            self._writer.put_audit(account.snapshot())
        return pa.array(scores, pa.float64())

    @staticmethod
    def _score_one(
        live: LiveCall, wanted: str | None, answer: str | None, text: str | None
    ) -> golden.GoldenScore | None:
        call = live.call
        if wanted is None:
            raise SpecError(
                f"{call.where}: the golden set {call.golden} has a NULL `expected` for the input {text!r}; "
                "give every golden input its expected answer."
            )
        if answer is None:
            return None
        try:
            return golden.score(call.task, json.loads(wanted), answer)
        except SpecError as exc:
            raise SpecError(f"{exc} (golden set {call.golden}, input {text!r})") from None


def _planned(answering: LiveCall) -> dict[str, object]:
    """What _llm_golden_sql needs to answer the golden set through the call's own SQL."""
    call = answering.call
    return {"handle": call.handle, "golden": call.golden, "spec_hash": call.task.spec_hash, "recheck": 0}


def _result_row(live: LiveCall, text: str | None, wanted: str, result: golden.GoldenScore | None) -> GoldenResultRow:
    call = live.call
    task = call.task
    return GoldenResultRow(
        invocation_id=call.invocation_id,
        node_id=call.node_id,
        function=task.function,
        model=task.model,
        spec_hash=task.spec_hash,
        golden=call.golden,
        input=text or "",
        expected=result.expected if result else _plain(wanted),
        answer=result.answer if result else None,
        correct=result.correct if result else None,
        score=result.score if result else None,
        wrong_fields=list(result.wrong_fields) if result and result.wrong_fields is not None else None,
        created_at=now(),
    )


def _plain(wanted: str) -> str:
    """The expected value as it was given, for an input that got no answer."""
    value = json.loads(wanted)
    return value if isinstance(value, str) else json.dumps(value)
