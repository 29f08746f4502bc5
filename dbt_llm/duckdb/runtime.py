"""The DuckDB functions of dbt-llm: what each registered function does with its Arrow chunks.

State lives elsewhere: the invocation (calls, budget, answers, pending requests), the audit book
(ledgers and statuses), the engine (requests) and the writer (tables)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ..calls.call import Call
from ..calls.ledger import Ledger
from ..calls.plan import plan_call
from ..config import LlmConfig
from ..engine import Budget, Outcome
from ..engine.factory import engine_for
from ..errors import DbtLlmError, InternalStateError, SpecError
from ..pricing import PriceTable
from ..providers import Provider
from ..providers.factory import build_provider
from . import dbt_events
from .audit_book import AuditBook
from .batch_mode import build_batch_mode
from .invocation import Invocation
from .job_store import JobStore
from .migrations import migrate
from .progress import ProgressReporter
from .recorder import Recorder
from .sender import Sender
from .settler import Settler
from .writer import Writer


def _flat(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _texts_by_key(keys: pa.Array, texts: pa.Array) -> dict[str, str]:
    return {k: t for k, t in zip(keys.to_pylist(), texts.to_pylist(), strict=True) if k is not None and t is not None}


class Runtime:
    def __init__(
        self,
        config: LlmConfig,
        provider_factory: Callable[[], Provider] | None = None,
        log: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self.config = config
        self._log = log
        # A model on this machine costs nothing per token.
        self._prices = PriceTable(config.prices, free=config.provider == "local")
        self.engine = engine_for(
            config, self._prices, provider_factory or (lambda: build_provider(config, on_exit=self.close))
        )
        self.writer = Writer()
        self._schema: str | None = None
        self._lock = threading.RLock()
        self.book = AuditBook(self._lock, provider=config.provider)
        self.recorder = Recorder(self._lock, self.writer)
        self._invocation: Invocation | None = None
        self._progress = ProgressReporter(
            config.progress_interval,
            self.book.running,
            lambda model: self.engine.limiter(model).in_flight,
            log,
            provider_down=lambda: self.engine.outage.down,
        )
        self.settler = Settler(self._lock, self.book, self.writer, log, lambda: self._schema)
        self.sender = Sender(
            self._lock, self.engine, self.recorder, self._prices, config.max_input_chars, self._progress.start
        )
        self.jobs = JobStore()
        self.batch_mode = build_batch_mode(config, self._lock, self.jobs, self.recorder, self.engine, log)
        self.sender.batch_mode = self.batch_mode

    # -- connection --
    def attach(self, conn: duckdb.DuckDBPyConnection) -> None:
        qualified = migrate(conn, self.config.schema)
        with self._lock:
            self._schema = qualified
        self.writer.bind(conn, qualified)
        self.jobs.bind(conn, qualified)

    def schema(self) -> str:
        """dbt_llm_schema(): the qualified schema of the llm_* tables."""
        with self._lock:
            assert self._schema is not None
            return self._schema

    # -- the invocation --
    def _begin(self, invocation_id: str) -> Invocation:
        """The invocation's state; a new dbt invocation settles what the last one left open (a
        statement that ended without a post-hook and without dbt saying so) and drops its state."""
        with self._lock:
            current = self._invocation
            if current is not None and current.id == invocation_id:
                return current
            self._invocation = Invocation(invocation_id, Budget(self.config.max_cost_usd))
            stale = self.book.open_ledgers()
            self.book.forget_all_but(invocation_id)
        self.engine.drop_prefetch()
        self.settler.close_ledgers(stale, node_failed=True)
        return self._invocation

    def on_dbt_event(self, msg: Any) -> None:
        """dbt's NodeFinished settles the node's open ledgers (see Settler.node_finished)."""
        finished = dbt_events.node_finished(msg)
        if finished is not None:
            self.settler.node_finished(*finished)

    # -- dbt_llm_prepare(args_json): called once per macro call when the model renders --
    def prepare(self, args_json: str) -> str:
        dbt_events.watch(self.on_dbt_event)
        args = json.loads(args_json)
        invocation_id = str(args.get("invocation_id"))
        try:
            call = plan_call(args, invocation_id, self.config, self._prices)
        except SpecError as exc:
            return json.dumps({"error": str(exc)})
        invocation = self._begin(invocation_id)
        handle, task = call.handle, call.task
        with self._lock:
            invocation.calls[handle] = call
            schema = self._schema
        self._ledger(call)  # so a run with no new rows still leaves an audit row
        return json.dumps(
            {
                "handle": handle,
                "spec_hash": task.spec_hash,
                "cache_table": f"{schema}.llm_cache",
                "structure": json.dumps(task.sql_structure),
                "model": task.model,
                # Truncating in SQL keeps the key equal to what is sent.
                "truncate_at": self.config.max_input_chars if self.config.on_long_input == "truncate" else None,
            }
        )

    def _ledger(self, call: Call) -> Ledger:
        return self.book.ledger(
            call.invocation_id,
            call.node_id,
            call.batch_id,
            call.task.function,
            call.task.model,
            command=call.command,
            hooked=call.hooked,
            on_error=call.on_error,
            dry_run=call.dry_run,
        )

    def _call(self, handles: pa.Array) -> tuple[Call, Invocation]:
        handle = handles[0].as_py()
        with self._lock:
            invocation = self._invocation
            call = invocation.calls.get(handle) if invocation is not None else None
        if call is None or invocation is None:
            raise InternalStateError(
                "dbt_llm: this query was compiled in another dbt invocation or process; run the model with `dbt run`."
            )
        return call, invocation

    # -- dbt_llm_tally(text is not null, handle): every row, one chunk at a time --
    def tally(self, present: pa.Array, handles: pa.Array) -> pa.Array:
        """Counts the rows with text for the audit, as cache hits until dbt_llm_resolve says otherwise;
        only booleans cross into Python. The first chunk writes the audit row, so a statement that
        ends early (a preview, an error) leaves one to settle."""
        present = _flat(present)
        if len(present):
            call, _ = self._call(handles)
            ledger = self._ledger(call)
            n_rows = pc.sum(present).as_py() or 0
            with self._lock:
                ledger.rows += n_rows
                ledger.cache_hits += n_rows
                first = not ledger.written
            if first:
                self.writer.put_audit(self.book.snapshot(ledger))
        return present

    # -- dbt_llm_submit(key, text, handle): the distinct texts the cache join missed --
    def submit(self, keys: pa.Array, texts: pa.Array, handles: pa.Array) -> pa.Array:
        """Queues the requests as a prefetch and returns NULLs at once. DuckDB runs it inside the cache
        subquery, over distinct texts, before the first row is resolved: while a chunk's resolve
        waits (from the second chunk with misses on), the misses of the whole model keep the slots
        busy, instead of one 2048-row chunk at a time; a query that stops early (LIMIT) does not
        send the rest."""
        keys, texts = _flat(keys), _flat(texts)
        if len(keys):
            call, invocation = self._call(handles)
            self.sender.send(call, invocation, self._ledger(call), _texts_by_key(keys, texts), prefetch=True)
        return pa.nulls(len(keys), pa.string())

    # -- dbt_llm_resolve(key, text, handle): only the rows the cache join missed --
    def resolve(self, keys: pa.Array, texts: pa.Array, handles: pa.Array) -> pa.Array:
        """The answers of one chunk's missed rows: waits for what dbt_llm_submit started (and sends
        whatever it did not see), then settles the audit counters of these rows."""
        keys, texts = _flat(keys), _flat(texts)
        if len(keys) == 0:
            return pa.nulls(0, pa.string())
        call, invocation = self._call(handles)
        ledger = self._ledger(call)
        miss_keys: list[str | None] = keys.to_pylist()
        texts_by_key = _texts_by_key(keys, texts)
        with self._lock:
            ledger.cache_hits -= sum(k is not None for k in miss_keys)  # tally counted every row as a hit
            resolves = invocation.resolves[call.handle] = invocation.resolves.get(call.handle, 0) + 1
        fatal: DbtLlmError | None = None
        if call.mode == "batch":
            try:
                self.batch_mode.collect(call, invocation, ledger)  # the first chunk waits for the jobs
            except DbtLlmError as exc:
                fatal = exc
        self.sender.send(call, invocation, ledger, texts_by_key)
        with self._lock:
            # The first row of a key to get here claims its request; later rows reuse the outcome.
            claimed = [
                invocation.pending.pop((call.handle, k)) for k in texts_by_key if (call.handle, k) in invocation.pending
            ]
        outcomes: dict[str, Outcome] = {}
        try:
            # The prefetch helps from the second chunk with misses on: a query that asks for one chunk
            # (a LIMIT) pays for exactly its rows, and a long one loses one chunk's wait at most.
            prefetch = call.handle if resolves > 1 else None
            outcomes = {o.key: o for o in self.engine.wait(claimed, owner=prefetch)}
            if call.mode == "batch":
                with self._lock:
                    outcomes.update(invocation.claim_batch_outcomes(call, list(texts_by_key)))
        except DbtLlmError as exc:
            fatal = exc

        with self._lock:
            chunk = invocation.answer_rows(call, miss_keys, outcomes)
            ledger.cache_hits += chunk.reused
            ledger.reused += chunk.reused
            ledger.failed_rows += chunk.failed
            ledger.skipped_rows += chunk.skipped
            if fatal is not None:
                ledger.status = "error"
        for outcome in chunk.shared_failures:
            self.recorder.error(call, outcome, texts_by_key, shared=True)
        if fatal is None and call.batch_id and (chunk.skipped or (chunk.failed and call.on_error == "fail")):
            fatal = self.settler.fail_batch(call, invocation, ledger, self.sender.drain(call, invocation))
        if fatal is None and call.batch_id and call.dry_run and ledger.est_requests:
            fatal = self.settler.batch_dry_run(call, ledger)
        if claimed or fatal is not None or chunk.shared_failures:
            # What this chunk paid for is committed before DuckDB gets the answers.
            self.writer.put_audit(self.book.snapshot(ledger))
            self.writer.commit_cache()
        if fatal is not None:
            raise fatal
        return pa.array(chunk.results, pa.string())

    # -- dbt_llm_estimated(invocation_id, node_id): in a dry run's post-hook, before dbt_llm_finish --
    def estimated(self, invocation_id: str, node_id: str) -> int:
        """Requests a dry run of the model would send: the post-hook rolls back a model that is not a
        table when there are any."""
        return sum(lg.est_requests for lg in self.book.ledgers_of(invocation_id, node_id))

    # -- dbt_llm_finish(invocation_id, node_id, materialized): the model's post-hook --
    def finish(self, invocation_id: str, node_id: str, materialized: str = "table") -> str:
        with self._lock:
            invocation = self._invocation
            if invocation is None or invocation.id != invocation_id:
                return f"{node_id}: nothing to settle"
            # dbt adds one post-hook per macro call: the model is settled by the first.
            if node_id in invocation.finished:
                return f"{node_id}: settled"
            invocation.finished.add(node_id)
        return self.settler.finish_model(invocation, node_id, materialized)

    def close(self) -> None:
        self._progress.stop()
        self.engine.close()


__all__ = ["Runtime"]
