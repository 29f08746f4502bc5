"""What dbt_llm_resolve does with one chunk of a live call's missed rows: wait for what
dbt_llm_submit started (and send whatever it did not see), answer each row, count the chunk, and
fail a microbatch batch on its own rows."""

from __future__ import annotations

from ..engine import Outcome, Pending
from ..errors import DbtLlmError, RunCancelledError
from .live_call import ChunkAnswers, LiveCall
from .sender import Sender
from .settler import Settler
from .writer import Writer


class Resolver:
    def __init__(self, sender: Sender, settler: Settler, writer: Writer) -> None:
        self._sender = sender
        self._settler = settler
        self._writer = writer

    def resolve(self, live: LiveCall, miss_keys: list[str | None], texts_by_key: dict[str, str]) -> list[str | None]:
        """The answers of the chunk's rows; what the chunk paid for is committed before DuckDB gets them."""
        resolves = live.next_resolve()
        # The row counter runs ahead: until the chunk is counted, its missed rows are held, not hits.
        missed = sum(k is not None for k in miss_keys)
        live.account.hold(missed)
        try:
            if live.account.unwritten():  # the first chunk with a miss: a run killed while it waits leaves a row
                self._writer.put_audit(live.account.snapshot())
            fatal = self._collect_jobs(live)
            self._sender.send(live, texts_by_key)
            claimed = live.claim(list(texts_by_key))
            outcomes, fatal = self._outcomes(live, claimed, list(texts_by_key), resolves, fatal)
        except BaseException:
            live.account.release(missed)
            raise
        chunk = live.answer(miss_keys, outcomes, fatal=fatal is not None)
        fatal = fatal or _cancelled(live, chunk) or self._batch_verdict(live, chunk)
        if claimed or fatal is not None or chunk.shared_failures:
            self._writer.put_audit(live.account.snapshot())
            self._writer.commit_cache()
        if fatal is not None:
            raise fatal
        return chunk.results

    def _collect_jobs(self, live: LiveCall) -> DbtLlmError | None:
        """Batch mode: the first chunk waits for the call's jobs."""
        if live.call.mode != "batch":
            return None
        try:
            self._sender.collect_jobs(live)
        except DbtLlmError as exc:
            return exc
        return None

    def _outcomes(
        self, live: LiveCall, claimed: list[Pending], keys: list[str], resolves: int, fatal: DbtLlmError | None
    ) -> tuple[dict[str, Outcome], DbtLlmError | None]:
        # The prefetch helps from the second chunk with misses on: a query that asks for one chunk
        # (a LIMIT) pays for exactly its rows, and a long one loses one chunk's wait at most.
        prefetch = live.handle if resolves > 1 else None
        outcomes: dict[str, Outcome] = {}
        try:
            outcomes = {o.key: o for o in self._sender.wait(claimed, owner=prefetch)}
            jobs = live.started_jobs() if live.call.mode == "batch" else None
            if jobs is not None:
                outcomes.update(jobs.claim(keys))
        except DbtLlmError as exc:
            fatal = exc
        stopped = next((o for o in outcomes.values() if o.stops), None)
        if stopped is not None and fatal is None:  # each of its rows is in llm_errors already
            fatal = stopped.stop_error(f"{live.call.where} llm_{live.call.task.function}: ")
        return outcomes, fatal

    def _batch_verdict(self, live: LiveCall, chunk: ChunkAnswers) -> DbtLlmError | None:
        """A microbatch batch fails in its own statement on skipped rows or, with on_error: fail, on
        failed ones (a dry run's batch is priced whole and writes nothing: see _llm_prepare)."""
        call = live.call
        if not call.batch_id or call.dry_run:
            return None
        if chunk.skipped or (chunk.failed and call.on_error == "fail"):
            return self._settler.fail_batch(live, self._sender.drain(live))
        return None


def _cancelled(live: LiveCall, chunk: ChunkAnswers) -> DbtLlmError | None:
    """Rows the cancelled run never answered: the statement fails rather than write them as NULL."""
    if not chunk.cancelled:
        return None
    live.account.cancel()
    return RunCancelledError(
        f"dbt_llm: {live.call.where}: the run was cancelled (Ctrl-C or SIGTERM); {chunk.cancelled} row(s) got "
        "no answer and nothing more was sent. Every answer paid for is cached: the next run sends only the rest."
    )
