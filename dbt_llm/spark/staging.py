"""Where Spark executors keep what they were paid for until the driver merges it into the tables.

Each answer (or failure, or a batch's row counts) is one JSON line, flushed and fsynced as it arrives,
in a file of its own per UDF batch: a killed executor loses at most the requests in flight, and the
driver may move or delete merged files while other batches still write. Layout under the root:

    calls/<handle>.json                               a prepared macro call: its arguments and config
    <schema>/<invocation_id>/<node_id>/part-*.jsonl   the lines of one model in one dbt invocation
    wanted/<handle>/part-*.jsonl                      batch mode, dry runs: the call's uncached texts
    batch_jobs/<job_id>.jsonl                         a batch job, written the moment it exists (jobs.py)
    ledgers/<invocation_id>[/<node_id>].json          max_cost_usd: what the invocation (model) spent

The root must be a path every executor can write and the driver can read (on one machine: a
directory next to the project; on a cluster: a shared mount).
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# The columns of a staged line, in the Spark DDL the driver reads them with (see tables.py).
LINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("kind", "string"),  # call | answer | error | budget (not sent: max_cost_usd) | tally | estimate
    ("handle", "string"),
    ("function", "string"),
    ("model", "string"),
    ("provider", "string"),
    ("command", "string"),
    ("on_error", "string"),
    ("dry_run", "boolean"),  # a call line's
    ("key", "string"),
    ("result", "string"),
    ("prompt_tokens", "bigint"),
    ("completion_tokens", "bigint"),
    ("cached_tokens", "bigint"),
    ("cost_usd", "double"),
    ("priced", "boolean"),
    ("requests", "bigint"),
    ("retries", "bigint"),
    ("rate_limited", "bigint"),
    ("ungrounded", "bigint"),
    ("error_kind", "string"),
    ("message", "string"),
    ("attempts", "bigint"),
    ("input_preview", "string"),
    ("rows", "bigint"),
    ("hits", "bigint"),
    ("failed", "bigint"),
    ("skipped", "bigint"),
    ("batch", "string"),  # a tally's batch: its handle and keys, hashed
    ("batch_answers", "bigint"),  # an answer from a batch job's line
    ("est_requests", "bigint"),  # a dry run's estimate (kind estimate)
    ("est_prompt_tokens", "bigint"),
    ("est_completion_tokens", "bigint"),
    ("est_cost_usd", "double"),
    ("created_at", "timestamp"),
    ("owner", "string"),  # a call's attribution (calls/attribution.py)
    ("group_name", "string"),
    ("tags", "array<string>"),
    ("meta", "string"),
)


def _safe(part: str) -> str:
    """A path segment from an id (dbt ids hold dots and letters; nothing may climb out of the root)."""
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in part)
    return cleaned.lstrip(".") or "_"


@dataclass(frozen=True)
class NodeDir:
    """The staging directory of one model in one invocation."""

    root: Path
    schema: str
    invocation_id: str
    node_id: str

    @property
    def path(self) -> Path:
        return self.root / _safe(self.schema) / _safe(self.invocation_id) / _safe(self.node_id)


def call_path(root: Path, handle: str) -> Path:
    return root / "calls" / f"{_safe(handle)}.json"


def write_call(root: Path, handle: str, call: dict[str, Any]) -> None:
    """Written whole then renamed, so a reader never sees half a call."""
    path = call_path(root, handle)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex}.tmp")
    tmp.write_text(json.dumps(call), encoding="utf-8")
    os.replace(tmp, path)


def read_call(root: Path, handle: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(call_path(root, handle).read_text(encoding="utf-8"))
    return data


class LineWriter:
    """One file of staged lines (one UDF batch's); safe to call from the engine's thread."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._file: Any = None

    def write(self, line: dict[str, Any]) -> None:
        data = (json.dumps(line, default=str) + "\n").encode("utf-8")
        with self._lock:
            if self._file is None:
                self._directory.mkdir(parents=True, exist_ok=True)
                name = f"part-{os.getpid()}-{uuid.uuid4().hex}.jsonl"
                self._file = open(self._directory / name, "ab")  # noqa: SIM115 - closed in close()
            self._file.write(data)
            self._file.flush()
            os.fsync(self._file.fileno())

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


def staged_lines(directory: Path) -> Iterator[dict[str, Any]]:
    """Every readable line under a node's directory; a torn last line (a killed writer) is skipped."""
    if not directory.is_dir():
        return
    for path in sorted(directory.glob("*.jsonl")):
        with open(path, encoding="utf-8") as lines:
            for raw in lines:
                try:
                    line = json.loads(raw)
                except json.JSONDecodeError:
                    continue
                if isinstance(line, dict):
                    yield line


# Directories of the root that hold no schema's models.
RESERVED = frozenset({"calls", "wanted", "batch_jobs", "ledgers"})


def wanted_dir(root: Path, handle: str) -> Path:
    return root / "wanted" / _safe(handle)


def ledger_path(root: Path, invocation_id: str, node_id: str) -> Path:
    base = root / "ledgers" / _safe(invocation_id)
    return base / f"{_safe(node_id)}.json" if node_id else base.with_suffix(".json")


def node_dirs(root: Path) -> Iterator[NodeDir]:
    """Every model directory left under the root, whichever schema and invocation wrote it."""
    if not root.is_dir():
        return
    for schema in sorted(p for p in root.iterdir() if p.is_dir() and p.name not in RESERVED):
        for invocation in sorted(p for p in schema.iterdir() if p.is_dir()):
            for node in sorted(p for p in invocation.iterdir() if p.is_dir()):
                yield NodeDir(root, schema.name, invocation.name, node.name)


def discard(directory: Path) -> None:
    """After a merge: the directory, and its invocation's directory once empty."""
    shutil.rmtree(directory, ignore_errors=True)
    try:
        directory.parent.rmdir()
    except OSError:
        pass


def forget_calls(root: Path, *, since: float) -> None:
    """The call files, wanted texts and ledgers this run wrote (modified since `since`): its models are
    done with them."""
    for path in [*(root / "calls").glob("*.json"), *(root / "ledgers").glob("**/*.json")]:
        try:
            if path.stat().st_mtime >= since:
                path.unlink()
        except OSError:
            pass
    for path in (root / "wanted").glob("*"):
        try:
            if path.stat().st_mtime >= since:
                shutil.rmtree(path, ignore_errors=True)
        except OSError:
            pass


MERGE_LOCK = "merge.lock"


def acquire_merge_lock(root: Path, owner: str, stale_after: float = 120.0) -> None:
    """Spark's file committer must not append to one table from two jobs at once (the first to finish
    deletes the other's temporary files), and dbt runs models on several threads: one merge at a time.
    A merge takes seconds; a lock older than `stale_after` was left by a merge that failed midway (Jinja
    has no `finally`) and is taken over: merges are idempotent, so that is safe."""
    path = root / MERGE_LOCK
    root.mkdir(parents=True, exist_ok=True)
    while True:
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                if time.time() - path.stat().st_mtime > stale_after:
                    path.unlink(missing_ok=True)
            except OSError:
                pass
            time.sleep(0.05)
            continue
        with os.fdopen(fd, "w") as held:
            held.write(owner)
        return


def release_merge_lock(root: Path, owner: str) -> None:
    path = root / MERGE_LOCK
    if _holder(path) == owner:
        path.unlink(missing_ok=True)


def _holder(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
