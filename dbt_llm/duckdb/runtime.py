"""The DuckDB functions of dbt-llm: each hands its Arrow chunks to the live call of its handle.

State lives elsewhere: the live calls (one per macro call in flight), the invocation (what its
calls share), the audit book (an account per audit row), the engine (requests) and the writer."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from ..calls.call import Call
from ..calls.plan import plan_call, truncate_at
from ..calls.rows import CallRow, now
from ..config import LlmConfig
from ..engine import Budget
from ..engine.factory import engine_for
from ..errors import InternalStateError, SpecError
from ..pricing import PriceTable
from ..providers import Provider
from ..providers.factory import build_provider
from . import dbt_events, signals
from .audit_book import AuditBook
from .batch_mode import BatchMode
from .cascade import Cascades
from .column_specs import ColumnSpecs
from .compare import Comparer
from .dry_run_tables import drop_dry_run_tables
from .golden import GoldenSets
from .interrupted import settle_interrupted
from .invocation import Invocation
from .job_store import JobStore
from .live_call import LiveCall
from .migrations import migrate
from .progress import ProgressReporter
from .rechecks import Rechecks
from .resolver import Resolver
from .row_counts import RowCounts
from .sender import Sender
from .settler import Settler
from .writer import Writer


def _flat(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _texts_by_key(keys: pa.Array, texts: pa.Array) -> dict[str, str]:
    return {k: t for k, t in zip(keys.to_pylist(), texts.to_pylist(), strict=True) if k is not None and t is not None}


def _planned(call: Call, schema: str | None, cut: int | None, rows_sequence: str | None = None) -> str:
    """What the macros build the call's SQL from (dbt_llm_prepare's answer)."""
    task = call.task
    return json.dumps(
        {
            "handle": call.handle,
            # The rows are counted in SQL on this sequence (row_counts.py); a preview's by dbt_llm_tally, as
            # no post-hook reads its sequence inside dbt's transaction; a golden call's not at all.
            "rows_sequence": rows_sequence if call.hooked else None,
            "tally": rows_sequence is not None and not call.hooked,
            "spec_hash": task.spec_hash,
            "cache_table": f"{schema}.llm_cache",
            "structure": json.dumps(task.sql_structure),
            "model": task.model,
            # with_confidence: the answer's key in llm_cache.result and its field in the STRUCT.
            "confidence": {"key": task.choices.key, "name": task.choices.name}
            if call.with_confidence and task.choices is not None
            else None,
            "truncate_at": cut,  # truncating in SQL keeps the key equal to what is sent
            "recheck": call.recheck,
            # escalate_to=: the key of its model's answers, and the confidence under which a row is asked of it
            "cascade": {
                "spec_hash": call.cascade.large.spec_hash,
                "threshold": call.cascade.threshold,
                "auto": call.cascade.auto,
            }
            if call.cascade
            else None,
        }
    )


def _call_row(call: Call, text: str, cut: int | None) -> CallRow:
    """The call's llm_calls row: what it asked, and of which model."""
    task = call.task
    return CallRow(
        *(call.invocation_id, call.node_id, call.batch_id, task.function, task.model, task.spec_hash),
        *(task.spec_json, text, cut, call.command, now()),
    )


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
        self.book = AuditBook(provider=config.provider)
        self.rows = RowCounts()
        # Guards the runtime's own fields: the schema, the invocation and its live calls.
        self._lock = threading.Lock()
        self._schema: str | None = None
        self._conn: duckdb.DuckDBPyConnection | None = None  # the first attached: dry-run tables are dropped on it
        self._invocation: Invocation | None = None
        self._calls: dict[str, LiveCall] = {}
        self._progress = ProgressReporter(
            config.progress_interval,
            self.book.running,
            lambda model: self.engine.limiter(model).in_flight,
            log,
            provider_down=lambda: self.engine.outage.why(),
        )
        self.settler = Settler(self.book, self.writer, log, self._schema_or_none)
        self.jobs = JobStore()
        self.batch_mode = BatchMode(config, self.jobs, log)
        self.sender = Sender(self.engine, self._prices, config.max_input_chars, self._progress.start, self.batch_mode)
        self._resolver = Resolver(self.sender, self.settler, self.writer)
        self._rechecks = Rechecks(self.engine, log)
        self._comparer = Comparer(self.sender.answer_now, self._bound, log)
        self.columns = ColumnSpecs(config, self._prices, self._schema_or_none)
        self.golden = GoldenSets(self.writer, self._schema_or_none, truncate_at(config))
        planned = lambda call: _planned(call, self._schema_or_none(), truncate_at(config))  # noqa: E731
        self.cascades = Cascades(self.sender, self._resolver, self.book, self.writer, planned, log, self._bound)

    # -- connection --
    def attach(self, conn: duckdb.DuckDBPyConnection) -> None:
        qualified = migrate(conn, self.config.schema)
        with self._lock:
            first, self._schema = self._schema is None, qualified
        if first:  # before the writer starts: nothing else writes yet
            self._settle_interrupted(conn, qualified)
            # Before dbt lists the relations: a killed dry run's tables must not pass for a model's state.
            drop_dry_run_tables(conn, qualified, self._log)
            self._conn = conn
            self.rows.bind(conn)
            self.rows.drop_all()  # a killed run's
        self.writer.bind(conn, qualified)
        self.jobs.bind(conn, qualified)

    def _settle_interrupted(self, conn: duckdb.DuckDBPyConnection, qualified: str) -> None:
        known = {dbt_events.current_invocation_id(), *self.book.invocation_ids()} - {None}
        settled = settle_interrupted(conn, qualified, [str(i) for i in known])
        if settled is not None:
            self._log(settled.note())

    def _schema_or_none(self) -> str | None:
        with self._lock:
            return self._schema

    def schema(self) -> str:
        """dbt_llm_schema(): the qualified schema of the llm_* tables."""
        schema = self._schema_or_none()
        assert schema is not None
        return schema

    # -- the invocation --
    def _begin(self, invocation_id: str) -> Invocation:
        """The invocation's state; a new dbt invocation settles what the last one left open (a
        statement that ended without a post-hook and without dbt saying so) and drops its state."""
        with self._lock:
            current = self._invocation
            if current is not None and current.id == invocation_id:
                return current
            self._invocation = invocation = Invocation(invocation_id, Budget(self.config.max_cost_usd))
            self._calls = {}
            stale = self.book.open_accounts()
            self.book.forget_all_but(invocation_id)
        self.engine.drop_prefetch()
        self.engine.new_invocation()
        self.engine.resume()  # the last invocation may have been cancelled
        self.settler.close_accounts(stale, node_failed=True)
        return invocation

    def on_dbt_event(self, msg: Any) -> None:
        """dbt's NodeFinished settles the node's open ledgers (see Settler.node_finished)."""
        signals.install()
        if dbt_events.cancelling(msg):
            self.cancel()
        finished = dbt_events.node_finished(msg)
        if finished is not None:
            self.settler.node_finished(*finished)
        if dbt_events.command_completed(msg):
            self._end_command()

    def _end_command(self) -> None:
        """The dbt command ended: drop the tables its dry run created for the models downstream."""
        with self._lock:
            schema, conn, invocation = self._schema, self._conn, self._invocation
        if schema is not None and conn is not None and invocation is not None:
            drop_dry_run_tables(conn, schema, self._log, invocation.id)
        self.rows.drop_all()

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
        if call.dry_run and args.get("dry_run_creates"):
            invocation.built_by_dry_run(call.node_id, first_batch_creates=True)
        # The account exists from here, so a run with no new rows still leaves an audit row.
        account = self.book.account_of(call)
        sequence = RowCounts.sequence(self.schema(), call.handle)
        account.count_in(sequence, self.rows.read) if call.hooked else None  # a preview's: dbt_llm_tally
        with self._lock:
            # A call rendered again (dbt compiles, then runs) keeps what it has in flight.
            if call.handle not in self._calls:
                live = self.golden.prepared(LiveCall(call, invocation, account, self.writer))
                self._calls[call.handle] = self.cascades.prepared(live)
            schema = self._schema
        cut = truncate_at(self.config)
        for made in self.cascades.calls_of(call):
            self.writer.put_call(_call_row(made, str(args.get("text") or ""), cut))
        return _planned(call, schema, cut, sequence)

    # -- dbt_llm_settled(invocation_id, node_id): whether a post-hook of the model settled it already --
    def settled(self, invocation_id: str, node_id: str) -> bool:
        with self._lock:
            invocation = self._invocation
        return invocation is not None and invocation.id == invocation_id and invocation.finished(node_id)

    def _live(self, handles: pa.Array) -> LiveCall:
        handle = handles[0].as_py()
        with self._lock:
            live = self._calls.get(handle) or self.golden.live(handle) or self.cascades.auto.live(handle)
        if live is None:
            raise InternalStateError(
                "dbt_llm: this query was compiled in another dbt invocation or process; run the model with `dbt run`."
            )
        return live

    # -- dbt_llm_tally(true, handle): a preview's rows, one chunk at a time --
    def tally(self, rows: pa.Array, handles: pa.Array) -> pa.Array:
        """Counts a preview's rows (blank ones are taken off by dbt_llm_resolve); its first chunk writes the row."""
        rows = _flat(rows)
        if len(rows):
            account = self._live(handles).account
            if account.count_rows(pc.sum(rows).as_py() or 0):
                self.writer.put_audit(account.snapshot())
        return rows

    # -- dbt_llm_submit(key, text, row's text, handle): the distinct texts the cache join missed --
    def submit(self, keys: pa.Array, texts: pa.Array, raws: pa.Array, handles: pa.Array) -> pa.Array:
        """Queues the prefetch, returns NULLs: run in the cache subquery over distinct texts before any row
        is resolved, so the whole model's misses keep the slots busy (a LIMIT does not send the rest)."""
        keys, texts = _flat(keys), _flat(texts)
        if len(keys):
            live = self._live(handles)
            live.note_missed(_flat(raws).to_pylist(), keys.to_pylist(), texts.to_pylist())
            self.sender.send(live, _texts_by_key(keys, texts), prefetch=True)
        return pa.nulls(len(keys), pa.string())

    # -- dbt_llm_sample(key, text, cached answer, handle): with a recheck, the rows the cache answered --
    def sample(self, keys: pa.Array, texts: pa.Array, results: pa.Array, handles: pa.Array) -> pa.Array:
        """Offers each cached row to the call's recheck sample; returns the answers as they are."""
        results = _flat(results)
        if len(results):
            sample = self._live(handles).sample
            rows = zip(_flat(keys).to_pylist(), _flat(texts).to_pylist(), results.to_pylist(), strict=True)
            for key, text, result in rows:
                if sample is not None and key is not None and text is not None and result is not None:
                    sample.offer(key, text, result)
        return results

    # -- dbt_llm_resolve(row's text, handle): only the rows the cache join did not answer --
    def resolve(self, raws: pa.Array, handles: pa.Array) -> pa.Array:
        """The answers of a chunk's missed rows (Resolver.resolve), by the row's text as dbt_llm_submit saw it."""
        raws = _flat(raws)
        if len(raws) == 0:
            return pa.nulls(0, pa.string())
        live = self._live(handles)
        keys, texts_by_key, blank = live.missed(raws.to_pylist())
        live.account.count_blank(blank)
        resolve = self.cascades.resolve if live.call.cascade else self._resolver.resolve
        results = resolve(live, keys, texts_by_key)
        return pa.array(results, pa.string())

    def built_by_dry_run(self, invocation_id: str, node_id: str) -> bool:
        """dbt_llm_built_by_dry_run: in a microbatch model's last batch, whether this dry run created
        its table (its first batch did): the post-hook drops it, as a rollback would."""
        with self._lock:
            invocation = self._invocation
        return invocation is not None and invocation.id == invocation_id and invocation.built_by_dry_run(node_id)

    # -- dbt_llm_finish(invocation_id, node_id, materialized): the model's post-hook --
    def finish(self, invocation_id: str, node_id: str, materialized: str = "table") -> str:
        with self._lock:
            invocation = self._invocation
        if invocation is None or invocation.id != invocation_id:
            return f"{node_id}: nothing to settle"
        # dbt adds one post-hook per macro call: the model is settled by the first.
        if not invocation.finish(node_id):
            return f"{node_id}: settled"
        with self._lock:
            calls = [live for live in self._calls.values() if live.call.node_id == node_id]
        if any(live.compared is not None for live in calls):
            self._comparer.run(calls)
        self._recheck(node_id)
        return self.settler.finish_model(invocation, node_id, materialized)

    def _bound(self) -> tuple[duckdb.DuckDBPyConnection, str] | None:
        with self._lock:
            return None if self._conn is None or self._schema is None else (self._conn, self._schema)

    def _recheck(self, node_id: str) -> None:
        """Before the rows settle: what a recheck pays is the model's. A microbatch batch settled already
        has its row written again."""
        with self._lock:
            calls = [live for live in self._calls.values() if live.call.node_id == node_id and live.sample]
        if not calls:
            return
        self._rechecks.run(calls)
        for account in {id(live.account): live.account for live in calls}.values():
            if account.ledger.closed:
                self.writer.put_audit(account.snapshot())

    def cancel(self) -> None:
        """Ctrl-C, SIGTERM or dbt cancelling its queries: nothing more is sent, waiting UDFs return
        (engine.cancel), and the rows still open settle as `cancelled` when their node ends."""
        self.engine.cancel()
        for account in self.book.open_accounts():
            account.cancel()

    def close(self) -> None:
        """At exit (atexit, before DuckDB's connection is torn down): our threads end first."""
        self._progress.stop()
        self.writer.close()
        self.engine.close()


__all__ = ["Runtime"]
