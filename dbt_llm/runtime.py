"""One process's dbt-llm state behind the DuckDB functions: prepared calls, the engine,
the writer, the per-model ledgers and the invocation's budget."""

from __future__ import annotations

import atexit
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from .config import LlmConfig
from .engine import Budget, Engine, Outcome, Pending, Request
from .errors import BudgetExceededError, DbtLlmError, DryRunError, InternalStateError, RowFailuresError, SpecError
from .pricing import PriceTable
from .providers import OpenAIProvider, Provider
from .tasks import Task, build_task, sha256_hex
from .warehouse import Writer, migrate, now


def _flat(values: pa.Array | pa.ChunkedArray) -> pa.Array:
    return values.combine_chunks() if isinstance(values, pa.ChunkedArray) else values


def _texts_by_key(keys: pa.Array, texts: pa.Array) -> dict[str, str]:
    return {k: t for k, t in zip(keys.to_pylist(), texts.to_pylist(), strict=True) if k is not None and t is not None}


@dataclass(frozen=True)
class Call:
    """One macro call in one model of one invocation."""

    handle: str
    task: Task
    invocation_id: str
    node_id: str
    dry_run: bool = False


@dataclass
class Ledger:
    """Counters of one llm_audit row: (invocation, node, function, model)."""

    invocation_id: str
    node_id: str
    function: str
    model: str
    provider: str
    started_at: datetime = field(default_factory=now)
    finished_at: datetime | None = None
    rows: int = 0
    cache_hits: int = 0
    api_calls: int = 0
    retries: int = 0
    rate_limited: int = 0
    failed_rows: int = 0
    skipped_rows: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = 0.0
    status: str = "running"
    est_requests: int = 0
    est_prompt_tokens: int = 0
    est_completion_tokens: int = 0
    est_cost_usd: float | None = 0.0
    queued: int = 0  # requests handed to the engine, for progress: not an audit column
    settled: int = 0  # of which answered or failed

    def row(self) -> dict[str, Any]:
        return dict(self.__dict__)


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
        self.engine = Engine(
            provider_factory or self._default_provider,
            prices=self._prices,
            # A CPU model answers as many requests at once as it has slots.
            max_concurrency=config.local_parallel if config.provider == "local" else config.max_concurrency,
            max_attempts=config.max_attempts,
            request_timeout=config.request_timeout,
            row_timeout=config.row_timeout,
            requests_per_minute=config.requests_per_minute,
            tokens_per_minute=config.tokens_per_minute,
        )
        self.writer = Writer()
        self._schema: str | None = None
        self._calls: dict[str, Call] = {}
        self._ledgers: dict[tuple[str, str, str, str], Ledger] = {}
        self._budgets: dict[str, Budget] = {}
        # Answers paid for in this invocation: later chunks of a running query cannot see
        # them in the cache table (their snapshot is older), so they are served from here.
        self._answers: dict[str, str] = {}
        self._estimated: set[str] = set()  # keys a dry run has already priced
        # Requests dbt_llm_submit queued, until a row of resolve claims them; then failures stay settled
        # for the rest of the invocation, so a text that failed is not paid for again in the same run.
        self._pending: dict[tuple[str, str], Pending] = {}
        self._finished: set[tuple[str, str]] = set()  # (invocation_id, node_id) settled by dbt_llm_finish
        self._settled: dict[tuple[str, str], Outcome] = {}
        self._resolves: dict[str, int] = {}  # dbt_llm_resolve calls per call handle
        self._answers_invocation: str | None = None
        self._lock = threading.RLock()
        self._progress: threading.Thread | None = None
        self._progress_every = config.progress_interval

    def _default_provider(self) -> Provider:
        if self.config.provider == "local":
            return self._local_provider()
        return OpenAIProvider(
            base_url=self.config.base_url,
            api_key=self.config.api_key,
            timeout=self.config.request_timeout,
            max_connections=self.config.max_concurrency,
        )

    def _local_provider(self) -> Provider:
        """llama.cpp's OpenAI-compatible server, in this process on 127.0.0.1: the same code path
        (retries, validation, cache, audit) as any remote endpoint."""
        from .local.server import shared_server

        server = shared_server(
            self.config.model, n_parallel=self.config.local_parallel, n_threads=self.config.local_threads
        )
        # Registered after the server's own exit hook, so it runs first: close connections, then stop it.
        atexit.register(self.close)
        return OpenAIProvider(
            base_url=server.base_url,
            api_key=lambda: server.api_key,
            timeout=self.config.request_timeout,
            max_connections=self.config.local_parallel,
            trust_env=False,
        )

    # -- connection --
    def attach(self, conn: duckdb.DuckDBPyConnection) -> None:
        qualified = migrate(conn, self.config.schema)
        with self._lock:
            self._schema = qualified
        self.writer.bind(conn, qualified)

    def schema(self) -> str:
        """dbt_llm_schema(): the qualified schema of the llm_* tables."""
        with self._lock:
            assert self._schema is not None
            return self._schema

    # -- dbt_llm_prepare(args_json): called once per macro call when the model renders --
    def prepare(self, args_json: str) -> str:
        try:
            args = json.loads(args_json)
            task = build_task(
                args,
                provider=self.config.provider,
                default_model=self.config.model,
                temperature=self.config.temperature,
            )
        except SpecError as exc:
            return json.dumps({"error": str(exc)})
        invocation_id, node_id = str(args.get("invocation_id")), str(args.get("node_id"))
        handle = sha256_hex(f"{invocation_id}\n{node_id}\n{task.spec_hash}")[:32]
        call = Call(handle, task, invocation_id, node_id, dry_run=bool(args.get("dry_run")))
        with self._lock:
            self._calls[handle] = call
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
        key = (call.invocation_id, call.node_id, call.task.function, call.task.model)
        with self._lock:
            if key not in self._ledgers:
                self._ledgers[key] = Ledger(*key, provider=self.config.provider)
            return self._ledgers[key]

    def _budget(self, invocation_id: str) -> Budget:
        with self._lock:
            if invocation_id not in self._budgets:
                self._budgets[invocation_id] = Budget(self.config.max_cost_usd)
            if self._answers_invocation != invocation_id:
                self._answers, self._estimated, self._answers_invocation = {}, set(), invocation_id
                self._pending, self._settled = {}, {}
            return self._budgets[invocation_id]

    def _call(self, handles: pa.Array) -> Call:
        handle = handles[0].as_py()
        with self._lock:
            call = self._calls.get(handle)
        if call is None:
            raise InternalStateError(
                "dbt_llm: this query was compiled in another dbt process; run the model with `dbt run`."
            )
        return call

    # -- dbt_llm_tally(text is not null, handle): every row, one chunk at a time --
    def tally(self, present: pa.Array, handles: pa.Array) -> pa.Array:
        """Counts the rows with text for the audit, as cache hits until dbt_llm_resolve says otherwise;
        only booleans cross into Python."""
        present = _flat(present)
        if len(present):
            ledger = self._ledger(self._call(handles))
            n_rows = pc.sum(present).as_py() or 0
            with self._lock:
                ledger.rows += n_rows
                ledger.cache_hits += n_rows
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
            call = self._call(handles)
            self._send(call, _texts_by_key(keys, texts), prefetch_for=call.handle)
        return pa.nulls(len(keys), pa.string())

    def _send(self, call: Call, texts_by_key: dict[str, str], prefetch_for: str | None = None) -> None:
        """Plans the keys not yet answered, sent or settled for this call and hands them to the engine
        without waiting. From dbt_llm_submit they are a prefetch (sent only while this call's resolve
        waits, see Engine.submit); from resolve, rows DuckDB asks for: those start now, too-long
        inputs fail, and a dry run prices them instead."""
        if call.dry_run and prefetch_for is not None:
            return  # a dry run prices only the rows DuckDB asks for (a LIMIT may stop it early)
        budget = self._budget(call.invocation_id)
        ledger = self._ledger(call)
        with self._lock:
            fresh = {
                k: t
                for k, t in texts_by_key.items()
                if k not in self._answers
                and (call.handle, k) not in self._pending
                and (call.handle, k) not in self._settled
            }
        requests: list[Request] = []
        limit = self.config.max_input_chars
        for key, text in fresh.items():
            if len(text) > limit and prefetch_for is not None:
                continue  # recorded as failed only if DuckDB asks for its row
            if len(text) > limit:  # only with on_long_input: fail; truncation happens in SQL
                outcome = Outcome(
                    key,
                    error_kind="input_too_long",
                    error=f"the input has {len(text)} characters, more than max_input_chars={limit}; "
                    "raise max_input_chars or set on_long_input: truncate",
                )
                with self._lock:
                    self._settled[(call.handle, key)] = outcome
                self._record(call, ledger, outcome, fresh)
            else:
                requests.append(Request(key, call.task, text, budget))
        if call.dry_run:
            self._estimate(call, ledger, requests)
            return
        if not requests:
            return
        with self._lock:
            ledger.queued += len(requests)
        self._start_progress()

        def on_outcome(outcome: Outcome) -> None:
            with self._lock:
                ledger.settled += 1
            self._record(call, ledger, outcome, fresh)

        pending = self.engine.submit(requests, on_outcome, prefetch_for=prefetch_for)
        with self._lock:
            for p in pending:  # another thread may have sent the same key meanwhile: keep the owner
                if p.owned or (call.handle, p.key) not in self._pending:
                    self._pending[(call.handle, p.key)] = p

    # -- dbt_llm_resolve(key, text, handle): only the rows the cache join missed --
    def resolve(self, keys: pa.Array, texts: pa.Array, handles: pa.Array) -> pa.Array:
        """The answers of one chunk's missed rows: waits for what dbt_llm_submit started (and sends
        whatever it did not see), then settles the audit counters of these rows."""
        keys, texts = _flat(keys), _flat(texts)
        if len(keys) == 0:
            return pa.nulls(0, pa.string())
        call = self._call(handles)
        ledger = self._ledger(call)
        miss_keys: list[str | None] = keys.to_pylist()
        texts_by_key = _texts_by_key(keys, texts)
        with self._lock:
            ledger.cache_hits -= sum(k is not None for k in miss_keys)  # tally counted every row as a hit
            resolves = self._resolves[call.handle] = self._resolves.get(call.handle, 0) + 1
        self._send(call, texts_by_key)
        with self._lock:
            # The first row of a key to get here claims its request; later rows reuse the outcome.
            claimed = [self._pending.pop((call.handle, k)) for k in texts_by_key if (call.handle, k) in self._pending]
        fatal: DbtLlmError | None = None
        outcomes: dict[str, Outcome] = {}
        try:
            # The prefetch helps from the second chunk with misses on: a query that asks for one chunk
            # (a LIMIT) pays for exactly its rows, and a long one loses one chunk's wait at most.
            prefetch = call.handle if resolves > 1 else None
            outcomes = {o.key: o for o in self.engine.wait(claimed, owner=prefetch)}
        except DbtLlmError as exc:
            fatal = exc

        results: list[str | None] = []
        hits = failed = skipped = 0
        with self._lock:
            self._settled.update(((call.handle, o.key), o) for o in outcomes.values() if not o.ok)
            for key in miss_keys:
                if key is None:
                    results.append(None)
                    continue
                # A key's first row here is the one that paid for it.
                outcome = outcomes.pop(key) if key in outcomes else None
                if outcome is None:
                    outcome = self._settled.get((call.handle, key))
                if outcome is None and key in self._answers:
                    results.append(self._answers[key])  # answered earlier in this invocation
                    hits += 1
                    continue
                results.append(outcome.result if outcome else None)
                if outcome is None:
                    if not call.dry_run:
                        skipped += 1
                elif outcome.error_kind == "budget":
                    skipped += 1
                elif not outcome.ok:
                    failed += 1
                elif outcome.shared:
                    hits += 1
            ledger.cache_hits += hits
            ledger.failed_rows += failed
            ledger.skipped_rows += skipped
            ledger.finished_at = now()
            if fatal is not None:
                ledger.status = "error"
            snapshot = ledger.row()
        if claimed or fatal is not None:
            # What this chunk paid for is committed before DuckDB gets the answers.
            self.writer.put_audit(snapshot)
            self.writer.commit_cache()
        if fatal is not None:
            raise fatal
        return pa.array(results, pa.string())

    def _start_progress(self) -> None:
        with self._lock:
            if self._progress is None:
                self._progress = threading.Thread(target=self._report_progress, name="dbt-llm-progress", daemon=True)
                self._progress.start()

    def _report_progress(self) -> None:
        """Every few seconds, for each model and function still calling: what it has done so far."""
        last: dict[tuple[str, str, str, str], tuple[float, int, int]] = {}
        while True:
            time.sleep(self._progress_every)
            now = time.monotonic()
            with self._lock:
                running = [(k, lg, lg.row()) for k, lg in self._ledgers.items() if lg.status == "running"]
            for key, lg, row in running:
                then, calls_then, settled_then = last.get(
                    key, (now - self._progress_every, row["api_calls"], row["settled"])
                )
                last[key] = (now, row["api_calls"], row["settled"])
                if row["api_calls"] == calls_then and row["settled"] == settled_then:
                    continue
                elapsed = max(now - then, 1e-9)
                rate = (row["api_calls"] - calls_then) / elapsed
                left = row["queued"] - row["settled"]
                done_rate = (row["settled"] - settled_then) / elapsed
                eta = f"ETA {_duration(left / done_rate)}" if done_rate > 0 else "ETA unknown"
                limiter = self.engine.limiter(lg.model)
                self._log(
                    f"dbt_llm: {lg.node_id} llm_{lg.function}: {row['settled']}/{row['queued']} texts answered, "
                    f"{row['rows']} rows ({row['cache_hits']} cached), {row['api_calls']} calls, "
                    f"{limiter.in_flight} in flight, {rate:.1f} req/s, {row['rate_limited']} x 429, "
                    f"{row['prompt_tokens'] + row['completion_tokens']} tokens, {_usd(row['cost_usd'])} so far, {eta}"
                )

    def _estimate(self, call: Call, ledger: Ledger, requests: list[Request]) -> None:
        """Dry run: what the requests would cost, sent nowhere."""
        price = self._prices.price(call.task.model)
        prompt = completion = 0
        with self._lock:
            requests = [r for r in requests if r.key not in self._estimated]
            self._estimated.update(r.key for r in requests)
        for request in requests:
            p, c = call.task.estimate_tokens(request.text)
            prompt, completion = prompt + p, completion + c
        with self._lock:
            # A key counted once per invocation, however many chunks or models ask for it.
            ledger.est_requests += len(requests)
            ledger.est_prompt_tokens += prompt
            ledger.est_completion_tokens += completion
            if ledger.est_cost_usd is not None:
                ledger.est_cost_usd = None if price is None else ledger.est_cost_usd + price.cost(prompt, completion)

    def _record(self, call: Call, ledger: Ledger, outcome: Outcome, texts: dict[str, str]) -> None:
        """On the engine's thread, as each answer arrives: queue it for the writer."""
        task = call.task
        with self._lock:
            ledger.api_calls += outcome.attempts
            ledger.retries += max(0, outcome.attempts - 1)
            ledger.rate_limited += outcome.rate_limited
            ledger.prompt_tokens += outcome.usage.prompt_tokens
            ledger.completion_tokens += outcome.usage.completion_tokens
            if ledger.cost_usd is not None:
                ledger.cost_usd = None if outcome.cost_usd is None else ledger.cost_usd + outcome.cost_usd
            if outcome.ok:
                assert outcome.result is not None
                self._answers[outcome.key] = outcome.result
        if outcome.ok:
            self.writer.put_cache(
                {
                    "key": outcome.key,
                    "function": task.function,
                    "model": task.model,
                    "result": outcome.result,
                    "prompt_tokens": outcome.usage.prompt_tokens,
                    "completion_tokens": outcome.usage.completion_tokens,
                    "cost_usd": outcome.cost_usd,
                    "created_at": now(),
                    "invocation_id": call.invocation_id,
                    "node_id": call.node_id,
                }
            )
        elif outcome.error_kind != "budget":
            self.writer.put_error(
                {
                    "invocation_id": call.invocation_id,
                    "node_id": call.node_id,
                    "key": outcome.key,
                    "function": task.function,
                    "model": task.model,
                    "error_kind": outcome.error_kind,
                    "message": outcome.error,
                    "attempts": outcome.attempts,
                    "input_preview": texts.get(outcome.key, "")[:200],
                    "created_at": now(),
                }
            )

    # -- dbt_llm_finish(invocation_id, node_id): the model's post-hook --
    def finish(self, invocation_id: str, node_id: str) -> str:
        with self._lock:
            # dbt adds one post-hook per macro call: the model is settled by the first.
            if (invocation_id, node_id) in self._finished:
                return f"dbt_llm: {node_id}: settled"
            self._finished.add((invocation_id, node_id))
            ledgers = [
                lg for (inv, node, _f, _m), lg in self._ledgers.items() if inv == invocation_id and node == node_id
            ]
            budget = self._budgets.get(invocation_id)
        failed = sum(lg.failed_rows for lg in ledgers)
        skipped = sum(lg.skipped_rows for lg in ledgers)
        dry_run = any(
            c.dry_run for c in self._calls.values() if c.invocation_id == invocation_id and c.node_id == node_id
        )
        estimated = sum(lg.est_requests for lg in ledgers)
        status = "budget_exceeded" if skipped else ("failed_rows" if failed else "success")
        status = "dry_run" if dry_run else status
        for lg in ledgers:
            with self._lock:
                lg.finished_at, lg.status = now(), status
                snapshot = lg.row()
            self.writer.put_audit(snapshot)
        self.writer.flush()
        for lg in ledgers:
            self._log(_summary(lg))
        where = (
            f"select * from {self._schema}.llm_errors where invocation_id = '{invocation_id}' and node_id = '{node_id}'"
        )
        if dry_run and estimated:
            raise DryRunError(
                f"dbt_llm dry run: {node_id} would send {estimated} request(s) "
                + "; ".join(_estimate_text(lg) for lg in ledgers if lg.est_requests)
                + ". Nothing was sent and the model was not built; run without dbt_llm_dry_run to build it."
            )
        if skipped:
            spent = budget.spent_usd if budget else 0.0
            cap = self.config.max_cost_usd
            raise BudgetExceededError(
                f"dbt_llm: budget reached in {node_id}: this invocation spent ${spent:.4f} of max_cost_usd "
                f"${cap}; {skipped} row(s) are left without an answer. Paid answers are cached: raise "
                "`max_cost_usd` (or remove it) and run again to finish only the rows left."
            )
        if failed and self.config.on_error == "fail":
            raise RowFailuresError(
                f"dbt_llm: {failed} row(s) of {node_id} got no valid answer. They are not cached, so the next "
                f"run retries them. See why: {where}. To keep NULLs instead of failing, set on_error: null."
            )
        calls = sum(lg.api_calls for lg in ledgers)
        hits = sum(lg.cache_hits for lg in ledgers)
        return f"dbt_llm: {node_id}: {calls} API call(s), {hits} cache hit(s)"

    def close(self) -> None:
        self.engine.close()


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    return f"{seconds // 60}m{seconds % 60:02d}s" if seconds >= 60 else f"{seconds}s"


def _usd(value: float | None) -> str:
    return "unknown USD (no price for this model)" if value is None else f"${value:.4f}"


def _estimate_text(lg: Ledger) -> str:
    tokens = lg.est_prompt_tokens + lg.est_completion_tokens
    return f"llm_{lg.function} ({lg.model}): {lg.est_requests} request(s), ~{tokens} tokens, ~{_usd(lg.est_cost_usd)}"


def _summary(lg: Ledger) -> str:
    if lg.status == "dry_run":
        return f"dbt_llm dry run: {lg.node_id}: {_estimate_text(lg)}; {lg.cache_hits} of {lg.rows} rows cached"
    return (
        f"dbt_llm: {lg.node_id} llm_{lg.function} ({lg.model}): {lg.rows} rows, {lg.cache_hits} cached, "
        f"{lg.api_calls} API calls ({lg.retries} retries), {lg.failed_rows} failed, "
        f"{lg.prompt_tokens + lg.completion_tokens} tokens, {_usd(lg.cost_usd)}"
    )
