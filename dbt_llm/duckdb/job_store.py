"""The batch jobs a run has created, in llm_batch_jobs and llm_batch_job_keys: written the moment a
job exists (so a run that dies while it waits loses nothing) and read by the next run, which collects
the jobs no run has collected instead of sending their requests again."""

from __future__ import annotations

import threading

import duckdb
import pyarrow as pa

from ..batch.lines import BatchRecord
from ..calls.rows import BATCH_JOB_COLUMNS, BatchJobRow, now, row_dict
from .writer import cursor_of


class JobStore:
    """Synchronous on purpose: a job row is committed before its caller goes on. Each call takes a
    fresh cursor of dbt's connection (never the cursor of the query that runs the UDF)."""

    def __init__(self) -> None:
        self._conn: duckdb.DuckDBPyConnection | None = None
        self._schema: str | None = None
        self._lock = threading.Lock()

    def bind(self, conn: duckdb.DuckDBPyConnection, qualified_schema: str) -> None:
        with self._lock:
            self._conn, self._schema = conn, qualified_schema

    def created(
        self, record: BatchRecord, *, provider: str, model: str, function: str, invocation_id: str, node_id: str
    ) -> None:
        """Record a job and the keys it carries, committed before this returns."""
        row = BatchJobRow(
            job_id=record.batch_id,
            provider=provider,
            model=model,
            function=function,
            invocation_id=invocation_id,
            node_id=node_id,
            requests=len(record.keys),
            status=record.status,
            input_file_id=record.input_file_id,
            output_file_id=None,
            error_file_id=None,
            completed=None,
            failed=None,
            created_at=record.created_at,
            finished_at=None,
            collected_at=None,
        )
        # A key of a packed line keeps its line's custom_id and its row id: the next run needs both to
        # read the line's answer if this one dies.
        packed = {key: (custom_id, row_id) for key, custom_id, row_id in record.packed}
        keys = pa.table(
            {
                "job_id": [record.batch_id] * len(record.keys),
                "key": list(record.keys),
                "custom_id": [packed.get(key, (None, None))[0] for key in record.keys],
                "row_id": [packed.get(key, (None, None))[1] for key in record.keys],
            },
            schema=pa.schema([(name, pa.string()) for name in ("job_id", "key", "custom_id", "row_id")]),
        )
        jobs = pa.Table.from_pylist([row_dict(row, BATCH_JOB_COLUMNS)])
        with self._cursor() as (cur, schema):
            cur.execute("begin")
            try:
                cur.register("_dbt_llm_job", jobs)
                cur.register("_dbt_llm_job_keys", keys)
                cols = ", ".join(BATCH_JOB_COLUMNS)
                cur.execute(f"insert into {schema}.llm_batch_jobs ({cols}) select {cols} from _dbt_llm_job")
                cur.execute(
                    f"insert into {schema}.llm_batch_job_keys (job_id, key, custom_id, row_id) "
                    "select job_id, key, custom_id, row_id from _dbt_llm_job_keys"
                )
                cur.execute("commit")
            except BaseException:
                cur.execute("rollback")
                raise
            finally:
                cur.unregister("_dbt_llm_job")
                cur.unregister("_dbt_llm_job_keys")

    def open_jobs(self, keys: list[str], provider: str) -> list[BatchRecord]:
        """Jobs of `provider` no run has collected that carry any of `keys`, with all their keys."""
        if not keys:
            return []
        with self._cursor() as (cur, schema):
            cur.register("_dbt_llm_wanted", pa.table({"key": keys}))
            try:
                rows = cur.execute(
                    f"""select j.job_id, j.input_file_id, j.created_at, j.status, list(k.key order by k.key),
                        list([k.key, k.custom_id, k.row_id] order by k.key) filter (where k.custom_id is not null)
                    from {schema}.llm_batch_jobs j join {schema}.llm_batch_job_keys k using (job_id)
                    where j.collected_at is null and j.provider = ?
                      and j.job_id in (select w.job_id from {schema}.llm_batch_job_keys w
                                       where w.key in (select key from _dbt_llm_wanted))
                    group by all order by j.created_at""",
                    [provider],
                ).fetchall()
            finally:
                cur.unregister("_dbt_llm_wanted")
        return [
            BatchRecord(job, file_id, tuple(job_keys), created, status, packed=tuple(tuple(p) for p in packed or []))
            for job, file_id, created, status, job_keys, packed in rows
        ]

    def finished(self, record: BatchRecord, *, completed: int, failed: int) -> None:
        """The job ended and every line of it was settled: it is collected."""
        with self._cursor() as (cur, schema):
            cur.execute(
                f"""update {schema}.llm_batch_jobs set status = ?, output_file_id = ?, error_file_id = ?,
                    completed = ?, failed = ?, finished_at = coalesce(finished_at, ?), collected_at = ?
                where job_id = ?""",
                [
                    record.status,
                    record.output_file_id,
                    record.error_file_id,
                    completed,
                    failed,
                    now(),
                    now(),
                    record.batch_id,
                ],
            )

    def waiting(self, record: BatchRecord) -> None:
        """The job had not ended when the run stopped waiting: keep its latest status."""
        with self._cursor() as (cur, schema):
            cur.execute(
                f"update {schema}.llm_batch_jobs set status = ? where job_id = ?", [record.status, record.batch_id]
            )

    def _cursor(self) -> _Cursor:
        with self._lock:
            conn, schema = self._conn, self._schema
        assert conn is not None and schema is not None, "JobStore used before the connection was bound"
        return _Cursor(conn, schema)


class _Cursor:
    def __init__(self, conn: duckdb.DuckDBPyConnection, schema: str) -> None:
        self._conn, self._schema = conn, schema
        self._cur: duckdb.DuckDBPyConnection | None = None

    def __enter__(self) -> tuple[duckdb.DuckDBPyConnection, str]:
        self._cur = cursor_of(self._conn)
        return self._cur, self._schema

    def __exit__(self, *exc: object) -> None:
        assert self._cur is not None
        self._cur.close()
