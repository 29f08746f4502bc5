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
import threading
from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa

from ..calls.call import Call
from ..calls.rows import GoldenResultRow, now
from ..errors import InternalStateError, SpecError
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

    def count_blank(self, n: int) -> None:
        pass

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
    # A dry run with dbt_llm_compare asks its golden set the new spec for real, like its sample.
    dry = live.call.dry_run and not live.call.compare
    call = dataclasses.replace(
        live.call,
        handle=live.handle + GOLDEN_SUFFIX,
        batch_id="",
        mode="realtime",
        recheck=0,
        compare=0,
        dry_run=dry,
        on_error="null",
        cascade=None,  # its SQL is the plain call's (_llm_golden_answer_sql): the first model's answers are scored
    )
    account = GoldenAccount(live.account.ledger, lock=live.account.lock)
    return LiveCall(call, live.invocation, account, writer)


class GoldenSets:
    """The golden sets of the invocation: the macro calls with golden= (told when they are prepared) and
    the calls that answer them (made in the model's post-hook), found by the UDFs by handle."""

    def __init__(self, writer: Writer, schema: Callable[[], str | None], truncate_at: int | None) -> None:
        self._writer = writer
        self._schema = schema
        self._truncate_at = truncate_at  # the call's SQL cuts texts there, as the model's rows are
        self._lock = threading.Lock()
        self._invocation = ""  # of the calls below: a new invocation starts afresh
        self._of: dict[str, LiveCall] = {}  # macro calls with golden=, by handle, in the order prepared
        self._answering: dict[str, LiveCall] = {}  # the calls answering their golden sets, by handle

    def prepared(self, live: LiveCall) -> LiveCall:
        """A live call just made (dbt_llm_prepare); returned as it is."""
        if live.call.golden:
            with self._lock:
                if live.call.invocation_id != self._invocation:
                    self._invocation, self._of, self._answering = live.call.invocation_id, {}, {}
                self._of[live.handle] = live
        return live

    def live(self, handle: str) -> LiveCall | None:
        with self._lock:
            return self._answering.get(handle)

    # -- dbt_llm_golden_calls(invocation_id, node_id): the model's post-hook, once per model --
    def calls(self, invocation_id: str, node_id: str) -> str:
        """The golden calls of the model to answer, each once per run (dbt adds a post-hook per macro
        call; a microbatch model answers its golden sets once, with the last batch's call), as JSON."""
        planned = []
        with self._lock:
            latest = {
                (live.call.task.spec_hash, live.call.golden): live
                for live in self._of.values()
                if invocation_id == self._invocation and live.call.node_id == node_id
            }
            for live in latest.values():
                answering = golden_call(live, self._writer)
                if answering.handle not in self._answering:
                    self._answering[answering.handle] = answering
                    planned.append(_planned(answering))
        extra = {"cache_table": f"{self._schema()}.llm_cache", "truncate_at": self._truncate_at}
        return json.dumps([{**p, **extra} for p in planned])

    # -- dbt_llm_golden_score(input, expected, answer, handle): each golden input, in the post-hook --
    def score(self, inputs: pa.Array, expected: pa.Array, answers: pa.Array, handles: pa.Array) -> pa.Array:
        """Scores each answer, writes its llm_golden_results row (not in a dry run: nothing was asked),
        counts the scored ones in the audit row; returns the scores (NULL: no answer)."""
        if len(answers) == 0:
            return pa.nulls(0, pa.float64())
        live = self.live(handles[0].as_py())
        if live is None:
            raise InternalStateError("dbt_llm: this golden set was planned in another dbt invocation; run `dbt run`.")
        call, account = live.call, live.account
        assert isinstance(account, GoldenAccount)
        rows = zip(_values(inputs), _values(expected), _values(answers), strict=True)
        scores: list[float | None] = []
        for text, wanted, answer in rows:
            if call.dry_run:  # priced, not asked: nothing to score
                scores.append(None)
                continue
            expected_json = _expected(call, wanted, text)
            result = None if answer is None else _score_one(call, expected_json, answer, text)
            scores.append(result.score if result else None)
            self._writer.put_golden(_result_row(live, text, expected_json, result))
        account.count_golden(sum(s is not None for s in scores), sum(s for s in scores if s is not None))
        if account.ledger.closed:  # a microbatch batch settled already: its row is written again
            self._writer.put_audit(account.snapshot())
        return pa.array(scores, pa.float64())


def _expected(call: Call, wanted: str | None, text: str | None) -> str:
    if wanted is None:
        raise SpecError(
            f"{call.where}: the golden set {call.golden} has a NULL `expected` for the input {text!r}; "
            "give every golden input its expected answer."
        )
    return wanted


def _score_one(call: Call, expected_json: str, answer: str, text: str | None) -> golden.GoldenScore:
    try:
        return golden.score(call.task, json.loads(expected_json), answer)
    except SpecError as exc:
        raise SpecError(f"{exc} (golden set {call.golden}, input {text!r})") from None


def _values(values: pa.Array | pa.ChunkedArray) -> list[str | None]:
    return list(values.to_pylist())


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
