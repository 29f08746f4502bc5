"""Batch jobs on Spark, as files of the staging root: `batch_jobs/<job_id>.jsonl` is written (fsynced,
then renamed into place) the moment a job exists, before the next one is uploaded, with one line for
the job and one per key it carries. When the job ends and every line of it is staged, a `collected`
line is appended. The driver inserts both into the Spark tables llm_batch_jobs and llm_batch_job_keys
(tables.py: jobs_merge) right after each step and when a command starts; a job file without a
`collected` line is a job no run collected: the next run collects it instead of sending its keys."""

from __future__ import annotations

import json
import os
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any

from ..batch.lines import BatchRecord
from ..calls.rows import now
from .staging import _safe
from .tables import literal, quote


def jobs_dir(root: Path) -> Path:
    return root / "batch_jobs"


def _fsynced(path: Path, lines: list[dict[str, Any]], *, append: bool) -> None:
    data = "".join(json.dumps(line, default=str) + "\n" for line in lines).encode("utf-8")
    target = path if append else path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    with open(target, "ab" if append else "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    if not append:
        os.replace(target, path)


class JobFiles:
    def __init__(self, root: Path, schema: str) -> None:
        self._dir = jobs_dir(root)
        self._schema = schema

    def _path(self, job_id: str) -> Path:
        return self._dir / f"{_safe(job_id)}.jsonl"

    def created(self, record: BatchRecord, *, provider: str, model: str, function: str, ids: tuple[str, str]) -> None:
        """Record a job and its keys (`ids`: the invocation and node that sent it), durably, now."""
        self._dir.mkdir(parents=True, exist_ok=True)
        packed = {key: (custom_id, row_id) for key, custom_id, row_id in record.packed}
        job = {
            "kind": "job", "schema": self._schema, "job_id": record.batch_id, "provider": provider, "model": model,
            "function": function, "invocation_id": ids[0], "node_id": ids[1], "requests": len(record.keys),
            "status": record.status, "input_file_id": record.input_file_id, "created_at": record.created_at,
        }  # fmt: skip
        keys = [
            {"kind": "key", "job_id": record.batch_id, "key": key, "custom_id": packed.get(key, (None, None))[0],
             "row_id": packed.get(key, (None, None))[1]}
            for key in record.keys
        ]  # fmt: skip
        _fsynced(self._path(record.batch_id), [job, *keys], append=False)

    def finished(self, record: BatchRecord, *, completed: int, failed: int) -> None:
        """The job ended and every line of it was staged: it is collected."""
        line = {
            "kind": "collected", "schema": self._schema, "job_id": record.batch_id, "status": record.status,
            "output_file_id": record.output_file_id, "error_file_id": record.error_file_id,
            "completed": completed, "failed": failed, "collected_at": now(),
        }  # fmt: skip
        _fsynced(self._path(record.batch_id), [line], append=True)

    def open_jobs(self, keys: set[str], provider: str) -> list[BatchRecord]:
        """Jobs of `provider` no run has collected that carry any of `keys`, with all their keys."""
        found: list[BatchRecord] = []
        for lines in read_jobs(self._dir):
            job = lines[0]
            if job.get("provider") != provider or any(line.get("kind") == "collected" for line in lines):
                continue
            job_keys = [line for line in lines if line.get("kind") == "key"]
            if not any(line["key"] in keys for line in job_keys):
                continue
            packed = tuple(
                (str(line["key"]), str(line["custom_id"]), str(line["row_id"]))
                for line in job_keys
                if line.get("custom_id") is not None
            )
            created = datetime.fromisoformat(str(job["created_at"]))
            record = BatchRecord(
                str(job["job_id"]), str(job["input_file_id"]), tuple(str(line["key"]) for line in job_keys),
                created, str(job["status"]), packed=packed,
            )  # fmt: skip
            found.append(record)
        return sorted(found, key=lambda record: record.created_at)

    def collected_ids(self) -> list[str]:
        """Jobs whose `collected` line is staged (their files go once the driver merged them)."""
        return [
            str(lines[0]["job_id"])
            for lines in read_jobs(self._dir)
            if lines[0].get("schema") == self._schema and lines[-1].get("kind") == "collected"
        ]

    def discard(self, job_ids: list[str]) -> None:
        for job_id in job_ids:
            self._path(job_id).unlink(missing_ok=True)


def read_jobs(directory: Path) -> list[list[dict[str, Any]]]:
    """Each job file's lines, its job line first (a file being written is not there yet: see created)."""
    jobs: list[list[dict[str, Any]]] = []
    for path in sorted(directory.glob("*.jsonl")) if directory.is_dir() else []:
        lines = []
        for raw in path.read_text(encoding="utf-8").splitlines():
            try:
                lines.append(json.loads(raw))
            except json.JSONDecodeError:
                continue  # a torn `collected` line: the job is collected again
        if lines and lines[0].get("kind") == "job":
            jobs.append(lines)
    return jobs


_JOB_LINE = (
    "`kind` string, `schema` string, `job_id` string, `provider` string, `model` string, `function` string, "
    "`invocation_id` string, `node_id` string, `requests` bigint, `status` string, `input_file_id` string, "
    "`output_file_id` string, `error_file_id` string, `completed` bigint, `failed` bigint, "
    "`created_at` timestamp, `collected_at` timestamp, `key` string, `custom_id` string, `row_id` string"
)


def jobs_merge(root: Path, schema: str) -> list[str]:
    """The statements that insert the staged jobs of `schema` into llm_batch_jobs (a row when created, one
    when collected) and llm_batch_job_keys; idempotent (anti joins), none when no job is staged."""
    if not any(lines[0].get("schema") == schema for lines in read_jobs(jobs_dir(root))):
        return []
    s, view = quote(schema), "_dbt_llm_staged_jobs"
    jobs = f"(select * from {view} where `kind` = 'job' and `schema` = {literal(schema)})"
    columns = "j.`job_id`, j.`provider`, j.`model`, j.`function`, j.`invocation_id`, j.`node_id`, j.`requests`"
    return [
        f"create or replace temporary view {view} ({_JOB_LINE}) using json "
        f"options (path {literal(str(jobs_dir(root)))}, pathGlobFilter '*.jsonl')",
        f"""insert into {s}.llm_batch_jobs select n.* from (
            select {columns}, j.`status`, j.`input_file_id`, cast(null as string), cast(null as string),
                cast(null as bigint), cast(null as bigint), j.`created_at`, cast(null as timestamp),
                cast(null as timestamp)
            from {jobs} j
        ) n left anti join {s}.llm_batch_jobs e on e.`job_id` = n.`job_id`""",
        f"""insert into {s}.llm_batch_jobs select n.* from (
            select {columns}, c.`status`, j.`input_file_id`, c.`output_file_id`, c.`error_file_id`, c.`completed`,
                c.`failed`, j.`created_at`, c.`collected_at`, c.`collected_at`
            from {jobs} j join {view} c on c.`job_id` = j.`job_id` and c.`kind` = 'collected'
        ) n left anti join {s}.llm_batch_jobs e on e.`job_id` = n.`job_id` and e.`collected_at` is not null""",
        f"""insert into {s}.llm_batch_job_keys select n.* from (
            select k.`job_id`, k.`key`, k.`custom_id`, k.`row_id`
            from {view} k left semi join {jobs} j on j.`job_id` = k.`job_id` where k.`kind` = 'key'
        ) n left anti join {s}.llm_batch_job_keys e on e.`job_id` = n.`job_id` and e.`key` = n.`key`""",
        f"drop view if exists {view}",
    ]
