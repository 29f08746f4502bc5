"""llm_agg on DuckDB: what dbt_llm_agg(list(text), handle) does with one chunk of groups (DuckDB hands
a scalar UDF up to 2048 of them; it has no Python aggregates, so the macro aggregates with list()).

Each group's tree is built in Python (functions/agg_tree.py), and the answers its nodes already have
are read in one query through a fresh cursor of dbt's connection, as the batch jobs are
(job_store.py), never through the cursor of the query calling the UDF; the answers paid for in this
invocation come from the invocation, since their cache rows may not be committed yet. The nodes
still without an answer are then asked level by level, leaves first, through the Sender like any
other call's rows, so budgets, dry runs, retries and progress apply. Each answer is recorded as it
arrives (a cache row for the one writer, or an llm_errors row), so a root that fails keeps every
answer below it for the next run."""

from __future__ import annotations

import dataclasses
import json
import sys
import threading
from collections.abc import Callable

import duckdb
import pyarrow as pa

from ..engine import Outcome
from ..errors import DbtLlmError, RunCancelledError
from ..functions.agg_tree import Node, Tree, build_tree, leaf_text, merge_task, merge_text
from .account import ChunkCounts
from .live_call import LASTING_ERRORS, LiveCall
from .sender import Sender
from .writer import Writer, cursor_of

# A merge's input is at most MAX_FAN_IN partial answers, each cut at max_tokens: max_input_chars bounds
# the texts of a leaf, not that.
_MERGE_LIMIT = sys.maxsize


@dataclasses.dataclass(frozen=True)
class _Asked:
    """What asking a chunk's missing nodes came to: the failed outcomes by key, and the error that stops the model."""

    failed: dict[str, Outcome]
    fatal: DbtLlmError | None


class Aggregates:
    def __init__(self, sender: Sender, writer: Writer, live_of: Callable[[pa.Array], LiveCall], max_chars: int) -> None:
        self._sender = sender
        self._writer = writer
        self._live_of = live_of  # the live call of a handle (Runtime._live)
        self._max_chars = max_chars
        self._lock = threading.Lock()
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._schema: str | None = None
        self._invocation = ""
        self._merges: dict[str, LiveCall] = {}  # by the handle of the macro call

    def bind(self, conn: duckdb.DuckDBPyConnection, qualified_schema: str) -> None:
        with self._lock:
            self._conn, self._schema = conn, qualified_schema

    # -- dbt_llm_agg(list of texts, handle): one chunk of groups --
    def agg(self, lists: pa.Array | pa.ChunkedArray, handles: pa.Array | pa.ChunkedArray) -> pa.Array:
        if len(lists) == 0:
            return pa.nulls(0, pa.string())
        live = self._live_of(handles)
        spec_hash = live.call.task.spec_hash
        trees = [
            build_tree(spec_hash, [t for t in group or [] if t is not None], self._max_chars)
            for group in lists.to_pylist()
        ]
        present = [t for t in trees if t is not None]
        if live.account.count_rows(len(present)):
            self._writer.put_audit(live.account.snapshot())
        known = self._known(live, [k for t in present for k in t.nodes])
        missed = [t for t in present if t.root not in known]
        asked = self._ask(live, missed, known) if missed else _Asked({}, None)
        fatal = asked.fatal or self._count(live, missed, known, asked)
        self._writer.put_audit(live.account.snapshot())
        self._writer.commit_cache()  # what the chunk paid for is committed before DuckDB gets it
        if fatal is not None:
            raise fatal
        return pa.array([None if t is None else known.get(t.root) for t in trees], pa.string())

    def _known(self, live: LiveCall, keys: list[str]) -> dict[str, str]:
        """The answers of `keys` already paid for: in this invocation, or in llm_cache."""
        known: dict[str, str] = {}
        rest: list[str] = []
        for key in dict.fromkeys(keys):
            answer = live.invocation.answer_of(key)
            if answer is None:
                rest.append(key)
            else:
                known[key] = answer[0]
        with self._lock:
            conn, schema = self._conn, self._schema
        if rest and conn is not None and schema is not None:
            cur = cursor_of(conn)
            try:
                sql = f"select key, result from {schema}.llm_cache where key in (select unnest(?))"
                known.update(cur.execute(sql, [rest]).fetchall())
            finally:
                cur.close()
        return known

    def _ask(self, live: LiveCall, trees: list[Tree], known: dict[str, str]) -> _Asked:
        """Asks the nodes without an answer, one level at a time (a merge needs its children's
        answers); a node shared by several groups is asked once. `known` gets each answer."""
        levels: dict[int, dict[str, Node]] = {}
        for tree in trees:
            for node in tree.needed(known):
                levels.setdefault(node.level, {})[node.key] = node
        merges = self._merges_of(live)
        failed: dict[str, Outcome] = {}
        for level in sorted(levels):
            texts = {k: t for k, t in ((k, self._input(live, n, known)) for k, n in levels[level].items()) if t}
            target = live if level == 0 else merges
            self._sender.send(target, texts, limit=None if level == 0 else _MERGE_LIMIT)
            try:
                outcomes = self._sender.wait(target.claim(list(texts)))
            except DbtLlmError as exc:
                return _Asked(failed, exc)
            failed.update((o.key, o) for o in outcomes if not o.ok)
            known.update((o.key, o.result) for o in outcomes if o.result is not None)
            for key in texts.keys() - known.keys():  # answered by another chunk or model of this run
                answer = live.invocation.answer_of(key)
                if answer is not None:
                    known[key] = answer[0]
            stopped = next((o for o in outcomes if o.stops), None)
            if stopped is not None:  # each of its nodes is in llm_errors already
                return _Asked(failed, stopped.stop_error(f"{live.call.where} llm_agg: "))
        return _Asked(failed, None)

    def _input(self, live: LiveCall, node: Node, known: dict[str, str]) -> str | None:
        """A node's request text; None for a merge a child of which has no answer (its failure is
        the child's). A dry run prices such a merge with answers of the expected length."""
        if node.leaf:
            return leaf_text(node)
        parts = [known.get(child) for child in node.children]
        if all(p is not None for p in parts):
            return merge_text(json.loads(p)["text"] for p in parts if p is not None)
        if live.call.dry_run:
            guess = "x" * (4 * live.call.task.answer_tokens)
            return merge_text(guess if p is None else json.loads(p)["text"] for p in parts)
        return None

    def _count(self, live: LiveCall, missed: list[Tree], known: dict[str, str], asked: _Asked) -> DbtLlmError | None:
        """Counts the chunk's groups in the audit row: a group the cache did not answer is failed when
        a node of its tree failed, skipped when the budget stopped one (never silently NULL)."""
        failed = skipped = lasting = cancelled = 0
        for tree in missed:
            if tree.root in known:
                continue
            kinds = {asked.failed[n.key].error_kind for n in tree.needed(known) if n.key in asked.failed}
            if "cancelled" in kinds:
                cancelled += 1
            elif kinds - {"budget"}:
                failed += 1
                lasting += bool(kinds & LASTING_ERRORS)
            else:
                skipped += not live.call.dry_run  # a dry run answers nothing it would pay for
        counts = ChunkCounts(len(missed), 0, failed, skipped, lasting)
        live.account.count_chunk(counts, fatal=asked.fatal is not None)
        if cancelled:
            live.account.cancel()
            return RunCancelledError(
                f"dbt_llm: {live.call.where}: the run was cancelled (Ctrl-C or SIGTERM); {cancelled} group(s) of "
                "llm_agg got no answer. Every partial answer paid for is cached: the next run asks only the rest."
            )
        return None

    def _merges_of(self, live: LiveCall) -> LiveCall:
        """The live call of a macro call's merges: its own task (the merge prompt), the same audit row."""
        with self._lock:
            if live.call.invocation_id != self._invocation:
                self._invocation, self._merges = live.call.invocation_id, {}
            merges = self._merges.get(live.handle)
            if merges is None:
                call = dataclasses.replace(live.call, handle=live.handle + ":merge", task=merge_task(live.call.task))
                merges = self._merges[live.handle] = LiveCall(call, live.invocation, live.account, self._writer)
            return merges


__all__ = ["Aggregates"]
