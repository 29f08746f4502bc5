"""Throughput of dbt-llm's API path under provider rate limits.

Run from the repo root (no network: a local rate-limited fake OpenAI server answers)::

    .venv/bin/python benchmarks/throughput_bench.py [--rows 2000] [--scenarios b60 b5 b1 faults tokens sparse]
                                                    [--quick] [--concurrency N] [--max-runs 3] [--lenient]
                                                    [--pythonpath DIR] [--keep]

``--pythonpath DIR`` runs dbt with another copy of the ``dbt_llm`` package (``DIR/dbt_llm``),
to compare engines on the same scenarios; ``--lenient`` makes the server not debit rejected
requests (real providers do).

One throwaway dbt project (a fresh DuckDB file, this repo as a package) holds a source table
``src`` of ``--rows`` DISTINCT texts and a model ``bench`` (materialized table) that runs
``llm_classify`` on every row.  The plugin config has no rate limit at all (provider openai,
model gpt-4o-mini, base_url, api_key_env, prices; ``max_concurrency`` at its default unless
``--concurrency`` is given).  Each scenario starts a fresh ``RateLimitedOpenAI``
(tests/ratelimited_server.py: per-request latency normal(0.2 s, 0.05 s) clipped to
[0.05, 0.5], token buckets for requests and tokens starting full, 429s with retry-after-ms,
failed requests debited), fills ``src`` with texts no earlier scenario used, and runs
``dbt run`` as a subprocess: the first run pays for every row, the second is fully cached.
With the plugin's default ``on_error: fail`` a run fails when some rows exhaust their retries
(their answers are not cached, the rest are); like a user would, the benchmark then runs again,
up to ``--max-runs`` runs in all, until one succeeds, and only then does the cached run.

Scenarios (rpm 3000 and tpm 1,000,000 unless said otherwise):

- ``b60``: 60 s buckets, rpm = 0.6 x rows (1200 for 2,000 rows): a burst of 60% of the job,
  then the steady rate;
- ``b5``: 5 s buckets (burst 250 requests);
- ``b1``: 1 s buckets (burst 50 requests, then 50 per second);
- ``faults``: 1 s buckets, and admitted requests fail at random: 2% 500, 1% 503, 1% HTML 502,
  0.5% hang (the connection is held 30 s, then closed with no answer);
- ``tokens``: 1 s buckets, rpm 10,000 and tpm set so that tokens bind at 40 requests per second
  (tpm = 40 * 60 * the mean token cost of a request, computed from the prompts);
- ``sparse``: 1 s buckets; a table of ``100 * rows`` rows of which 1% (``rows`` distinct texts,
  spread evenly) are new.  The other 99% repeat ``rows / 4`` older texts that a pre-fill model
  (same llm_classify call, so the same cache keys) caches first, against an unlimited
  zero-latency server.  Then the model over all rows runs (first) and runs again (cached).

Not run unless named in ``--scenarios``:

- ``burst``: 60 s buckets at rpm 3000, a bucket larger than the job: the ideal is one latency
  (every request admitted at once), so any client is bound by how many requests it keeps in flight;
- ``sparse1m``: ``sparse`` at its full size whatever ``--rows`` says: 1,000,000 rows of which 1%
  (10,000 texts) are new, rpm 12,000 (200 requests per second), 1 s buckets.

Columns of the table:

- ``answered``, ``admitted``, ``429s``, ``faults``, ``requests``: what the server saw in all the
  paying runs (``answered``: 200s; ``faults``: admitted requests that failed: 500, 503, 502,
  hang);
- ``runs``: dbt runs it took to get every row answered (1 unless rows failed);
  ``failed``: rows the first run left without an answer;
- ``run_s``: ``execution_time`` of the model in ``target/run_results.json``, summed over those
  runs (dbt's start-up between runs is not counted);
- ``cached_s``: the same for the fully cached run that follows (nothing sent);
- ``ideal_s``: ``RateLimitedOpenAI.ideal_time(rows + faults)``: the fastest any client could
  get that many requests admitted from full buckets, ``(n - burst capacity) / rate + 0.2 s``,
  for the tighter of the request and token limits (a fault wastes one admitted request; the
  time a hang holds its connection is not counted: a client may give up on it early);
- ``efficiency``: ``ideal_s / (run_s - runs * cached_s)``, 1.0 is perfect; ``incomplete`` when
  rows were still unanswered after ``--max-runs`` runs (then no cached run is made);
- ``api_s``: from the first request's arrival to the last answer (server clock; with several
  runs it spans the gaps between them);
  ``pre_s`` / ``post_s``: the model's execution before the first request / after the last
  answer (dbt, DuckDB, the cache writes), on the wall clock;
- ``inflight``: mean / most requests the server held at once during ``api_s`` (the client's
  concurrency as the server sees it);
- ``dbt_cpu``: CPU seconds (user + sys) of the first run's dbt process; ``srv_cpu``: CPU seconds
  of this process (the fake server's threads) meanwhile.  On a small machine these show whether
  the client or the server is short of CPU.

Exit status 1 when a dbt run fails or a cached run sends a request: correctness, never timing.
Timings depend on the machine; nothing asserts them.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from cache_bench import API_KEY, LABELS, MODEL_SQL, REPO
from openai_server import FakeOpenAI
from ratelimited_server import Latency, RateLimitedOpenAI, ServerStats

TESTS = REPO / "tests"

PRICES = {"gpt-4o-mini": {"input": 0.15, "output": 0.6}}
FAULTS = {"500": 0.02, "503": 0.01, "502_html": 0.01, "hang": 0.005}
RPM, TPM = 3000, 1_000_000
TOKEN_BOUND_RPS = 40
SPARSE_FACTOR = 100  # sparse table: rows * 100 rows, 1% of them new
FILLER = (
    "the customer says the invoice total looks wrong after the last plan change and asks for "
    "an explanation of the new charges, a corrected invoice and a refund of the difference"
)
PREFILL_SQL = MODEL_SQL.replace("source('bench', 'src')", "source('bench', 'src_sparse')") + "where not is_new\n"
SPARSE_SQL = MODEL_SQL.replace("source('bench', 'src')", "source('bench', 'src_sparse')")


@dataclass(frozen=True)
class Scenario:
    name: str
    bucket_seconds: float
    rpm: int = RPM
    tpm: int | None = TPM  # None: token-bound, derived from the prompts
    faults: dict[str, float] = field(default_factory=dict)
    sparse: bool = False
    rpm_per_row: float | None = None  # rpm = this x the uncached rows (so the bucket is a share of the job)
    new_rows: int | None = None  # uncached rows, whatever --rows says
    default: bool = True  # run when --scenarios is not given

    def uncached(self, rows: int) -> int:
        return self.new_rows if self.new_rows is not None else rows

    def requests_per_minute(self, rows: int) -> int:
        return round(self.rpm_per_row * self.uncached(rows)) if self.rpm_per_row else self.rpm


SCENARIOS = [
    # A 60 s bucket holding 60% of the job: a burst, then the steady rate.
    Scenario("b60", 60, rpm_per_row=0.6),
    Scenario("b5", 5),
    Scenario("b1", 1),
    Scenario("faults", 1, faults=FAULTS),
    Scenario("tokens", 1, rpm=10_000, tpm=None),
    Scenario("sparse", 1, sparse=True),
    # A bucket larger than the job: the ideal is one latency, any client is bound by its concurrency.
    Scenario("burst", 60, default=False),
    # 1,000,000 rows of which 1% (10,000 texts) are new, at 200 requests per second.
    Scenario("sparse1m", 1, rpm=12_000, sparse=True, new_rows=10_000, default=False),
]


@dataclass
class DbtRun:
    ok: bool
    wall_s: float
    model_s: float
    started: float  # wall-clock epoch seconds of the model's execute phase
    finished: float
    status: str
    message: str
    cpu_s: float = math.nan  # user + sys CPU of the dbt process
    self_cpu_s: float = math.nan  # user + sys CPU of this process (the server) meanwhile


@dataclass
class Row:
    scenario: str
    rows: int
    new_rows: int
    stats: ServerStats
    runs: list[DbtRun]  # until one succeeded (a run fails when rows exhaust their retries)
    cached: DbtRun
    cached_requests: int
    requests: int  # chat requests that reached the server in the paying runs (hangs still held included)
    ideal_s: float
    tpm: int
    api_start: float  # epoch seconds of the first request's arrival
    api_end: float  # epoch seconds of the last answer

    @property
    def first(self) -> DbtRun:
        return self.runs[0]

    @property
    def run_s(self) -> float:
        return sum(r.model_s for r in self.runs)

    @property
    def failed_rows(self) -> int:
        """Rows the first run left without an answer (from dbt_llm's RowFailuresError)."""
        match = re.search(r"(\d+) row\(s\) of \S+ got no valid answer", self.first.message)
        return int(match.group(1)) if match else 0

    @property
    def complete(self) -> bool:
        return self.runs[-1].ok

    @property
    def efficiency(self) -> float:
        spent = self.run_s - len(self.runs) * self.cached.model_s
        return self.ideal_s / spent if spent > 0 else math.nan

    @property
    def ok(self) -> bool:
        return self.runs[-1].ok and self.cached.ok and self.cached_requests == 0


def _epoch(stamp: str | None) -> float:
    if not stamp:
        return math.nan
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


class Project:
    """A temp dbt project using this repo as a package; its source tables are made with SQL."""

    def __init__(self, root: Path, concurrency: int | None, timeout: float, pythonpath: str | None = None) -> None:
        self.root = root
        self.db = root / "bench.duckdb"
        self.concurrency = concurrency
        self.timeout = timeout
        self.dbt_bin = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"
        self.env = {**os.environ, "BENCH_KEY": API_KEY, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        self.env.pop("OPENAI_API_KEY", None)
        if pythonpath:  # e.g. another copy of the dbt_llm package, to compare engines
            self.env["PYTHONPATH"] = os.pathsep.join(p for p in (pythonpath, self.env.get("PYTHONPATH")) if p)
        self.runs = 0
        tables = [{"name": "src"}, {"name": "src_sparse"}]
        files: dict[str, Any] = {
            "dbt_project.yml": {"name": "bench", "version": "1.0.0", "config-version": 2, "profile": "bench"},
            "packages.yml": {"packages": [{"local": str(REPO)}]},
            "models/sources.yml": {"version": 2, "sources": [{"name": "bench", "schema": "main", "tables": tables}]},
        }
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(yaml.safe_dump(content, sort_keys=False))
        (root / "models" / "bench.sql").write_text(MODEL_SQL)
        (root / "models" / "sparse_prefill.sql").write_text(PREFILL_SQL)
        (root / "models" / "sparse.sql").write_text(SPARSE_SQL)
        with duckdb.connect(str(self.db)) as con:
            con.execute("create table src (id bigint, body varchar)")
            con.execute("create table src_sparse (id bigint, body varchar, is_new boolean)")
        self.write_profile("http://127.0.0.1:9/v1")
        self.dbt("deps")

    def write_profile(self, base_url: str) -> None:
        config: dict[str, Any] = {
            "provider": "openai",
            "model": "gpt-4o-mini",
            "base_url": base_url,
            "api_key_env": "BENCH_KEY",
            "prices": PRICES,
        }
        if self.concurrency is not None:
            config["max_concurrency"] = self.concurrency
        output = {
            "type": "duckdb",
            "path": str(self.db),
            "threads": 1,
            "plugins": [{"module": "dbt_llm.plugin", "config": config}],
        }
        profile = {"bench": {"target": "bench", "outputs": {"bench": output}}}
        (self.root / "profiles.yml").write_text(yaml.safe_dump(profile, sort_keys=False))

    def execute(self, sql: str) -> list[tuple[Any, ...]]:
        with duckdb.connect(str(self.db)) as con:
            return con.execute(sql).fetchall()

    def dbt(self, *args: str) -> DbtRun:
        """Run dbt as a child process (bounded by ``timeout``); read the model's timing."""
        self.runs += 1
        log = self.root / f"dbt_{self.runs}_{args[0]}.out"
        cmd = [self.dbt_bin, *args, "--project-dir", str(self.root), "--profiles-dir", str(self.root)]
        start = time.perf_counter()
        children, me = resource.getrusage(resource.RUSAGE_CHILDREN), resource.getrusage(resource.RUSAGE_SELF)
        try:
            with log.open("w") as out:
                proc = subprocess.run(
                    cmd, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT, timeout=self.timeout
                )
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = -1
        wall = time.perf_counter() - start
        children_after, me_after = (
            resource.getrusage(resource.RUSAGE_CHILDREN),
            resource.getrusage(resource.RUSAGE_SELF),
        )
        cpu = children_after.ru_utime + children_after.ru_stime - children.ru_utime - children.ru_stime
        self_cpu = me_after.ru_utime + me_after.ru_stime - me.ru_utime - me.ru_stime
        if args[0] != "run":
            if code != 0:
                sys.exit(f"dbt {' '.join(args)} failed ({code}):\n{log.read_text()[-4000:]}")
            return DbtRun(True, wall, math.nan, math.nan, math.nan, "success", "")
        results_path = self.root / "target" / "run_results.json"
        if code == -1 or not results_path.exists():
            return DbtRun(False, wall, math.nan, math.nan, math.nan, "timeout" if code == -1 else "no results", "")
        result = json.loads(results_path.read_text())["results"][0]
        timing = {t["name"]: t for t in result.get("timing", [])}
        execute = timing.get("execute", {})
        return DbtRun(
            ok=code == 0 and result["status"] == "success",
            wall_s=wall,
            model_s=float(result["execution_time"]),
            started=_epoch(execute.get("started_at")),
            finished=_epoch(execute.get("completed_at")),
            status=str(result["status"]),
            message=str(result.get("message") or "")[:1000],
            cpu_s=cpu,
            self_cpu_s=self_cpu,
        )


TOKEN_COST_SCRIPT = """
import json, sys
sys.path.insert(0, sys.argv[1])
from ratelimited_server import token_cost
from dbt_llm.functions.tasks import build_task
labels, texts = json.load(sys.stdin)
task = build_task({"function": "classify", "labels": labels}, provider="openai", default_model="gpt-4o-mini",
                  temperature=0.0)
costs = [token_cost({"messages": task.messages(t), "max_tokens": task.max_tokens}) for t in texts]
print(sum(costs) / len(costs))
"""


def mean_token_cost(project: Project, table: str, where: str = "true") -> float:
    """Mean tokens the server will charge per request, from the prompts of the dbt_llm that dbt runs
    (so ``--pythonpath`` is honoured: prompts and max_tokens may differ between engines)."""
    texts = [row[0] for row in project.execute(f"select distinct body from {table} where {where}")]
    proc = subprocess.run(
        [sys.executable, "-c", TOKEN_COST_SCRIPT, str(TESTS)],
        input=json.dumps([LABELS, texts]),
        env=project.env,
        cwd=project.root,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return float(proc.stdout.strip())


def body_sql(tag: str, number: str) -> str:
    return f"'ticket ' || {number} || ' ({tag}): {FILLER}'"


def fill_dense(project: Project, tag: str, rows: int) -> None:
    project.execute(
        f"create or replace table src as select i as id, {body_sql(tag, 'i')} as body from range({rows}) t(i)"
    )


def fill_sparse(project: Project, tag: str, new: int) -> None:
    """``new * SPARSE_FACTOR`` rows: every SPARSE_FACTOR-th is a new text, the rest repeat ``new / 4`` old ones."""
    old = max(1, new // 4)  # fewer old texts: a quicker pre-fill, and the cache join is the same
    total = new * SPARSE_FACTOR
    project.execute(
        f"""create or replace table src_sparse as
            select i as id,
                   case when i % {SPARSE_FACTOR} = 0 then {body_sql(tag + " new", f"(i // {SPARSE_FACTOR})")}
                        else {body_sql(tag + " old", f"(i % {old})")} end as body,
                   i % {SPARSE_FACTOR} = 0 as is_new
            from range({total}) t(i)"""
    )


def run_scenario(project: Project, scenario: Scenario, rows: int, args: argparse.Namespace) -> Row:
    tag = scenario.name  # texts no other scenario uses: all uncached
    rpm, rows = scenario.requests_per_minute(rows), scenario.uncached(rows)
    if scenario.sparse:
        fill_sparse(project, tag, rows)
        table, model, n_rows = "src_sparse", "sparse", rows * SPARSE_FACTOR
        with FakeOpenAI(latency=0.0, api_key=API_KEY) as fast:
            project.write_profile(fast.base_url)
            start = time.perf_counter()
            prefill = project.dbt("run", "--select", "sparse_prefill")
            print(
                f"[{scenario.name}] pre-filled {len(fast.requests)} old texts "
                f"({n_rows - rows} rows) in {time.perf_counter() - start:.1f}s",
                flush=True,
            )
            if not prefill.ok:
                sys.exit(f"pre-fill failed: {prefill.status} {prefill.message}")
        cost = mean_token_cost(project, table, "is_new")
    else:
        fill_dense(project, tag, rows)
        table, model, n_rows = "src", "bench", rows
        cost = mean_token_cost(project, table)
    tpm = scenario.tpm if scenario.tpm is not None else math.ceil(TOKEN_BOUND_RPS * 60 * cost)
    server = RateLimitedOpenAI(
        rpm=rpm,
        tpm=tpm,
        bucket_seconds=scenario.bucket_seconds,
        latency=Latency(),
        fault_rates=scenario.faults,
        hang_seconds=args.hang_seconds,
        seed=args.seed,
        count_rejected=not args.lenient,
        api_key=API_KEY,
    )
    with server:
        server_start = time.time() - time.monotonic() + server.origin  # epoch seconds of the server's origin
        project.write_profile(server.base_url)
        print(
            f"[{scenario.name}] {n_rows} rows, {rows} uncached; rpm {rpm}, tpm {tpm}, "
            f"bucket {scenario.bucket_seconds:g}s, ~{cost:.0f} tokens/request, faults {scenario.faults or 'none'}",
            flush=True,
        )
        runs: list[DbtRun] = []
        while len(runs) < args.max_runs and not (runs and runs[-1].ok):
            run = project.dbt("run", "--select", model)
            runs.append(run)
            stats = server.stats()
            print(
                f"[{scenario.name}] run {len(runs)}: {run.status} in {run.model_s:.1f}s; so far {stats.admitted} "
                f"admitted, {stats.rejected} x 429, faults {stats.faults or 'none'}",
                flush=True,
            )
            if not run.ok:
                print(f"[{scenario.name}]   {run.message[:200]}", flush=True)
        arrivals = server.arrivals()
        stats = server.stats()
        if runs[-1].ok:
            cached = project.dbt("run", "--select", model)
        else:  # rows are still unanswered: another run would not be a cached one
            cached = DbtRun(False, math.nan, math.nan, math.nan, math.nan, "skipped", "rows left unanswered")
        cached_requests = server.arrivals() - arrivals
        print(f"[{scenario.name}] cached: {cached.status} in {cached.model_s:.1f}s, {cached_requests} requests")
        ideal = server.ideal_time(rows + stats.fault_count)  # at the mean token cost the server measured
    return Row(
        scenario=scenario.name,
        rows=n_rows,
        new_rows=rows,
        stats=stats,
        runs=runs,
        cached=cached,
        cached_requests=cached_requests,
        requests=arrivals,
        ideal_s=ideal,
        tpm=tpm,
        api_start=server_start + stats.first_arrival,
        api_end=server_start + stats.last_done,
    )


def print_table(rows: list[Row]) -> None:
    cols = ["scenario", "rows", "uncached", "answered", "admitted", "429s", "faults", "requests", "runs", "failed"]
    cols += ["run_s"]
    cols += ["cached_s", "ideal_s", "efficiency", "api_s", "pre_s", "post_s", "inflight", "dbt_cpu", "srv_cpu"]
    widths = [max(len(c), 8) for c in cols]
    print("\n" + "  ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)))
    for r in rows:
        s = r.stats
        values: list[Any] = [r.scenario, r.rows, r.new_rows, s.ok, s.admitted, s.rejected, s.fault_count, r.requests]
        values += [len(r.runs), r.failed_rows, f"{r.run_s:.2f}", f"{r.cached.model_s:.2f}", f"{r.ideal_s:.2f}"]
        values += [
            f"{r.efficiency:.3f}" if r.complete else "incomplete",
            f"{s.span:.2f}",
            f"{r.api_start - r.first.started:.2f}",
        ]
        values += [f"{r.runs[-1].finished - r.api_end:.2f}"]
        values += [f"{s.mean_inflight:.1f}/{s.max_inflight}", f"{r.first.cpu_s:.1f}", f"{r.first.self_cpu_s:.1f}"]
        print("  ".join(f"{v!s:>{w}}" for v, w in zip(values, widths, strict=True)))
    for r in rows:
        if not r.ok:
            print(
                f"  {r.scenario}: last run {r.runs[-1].status}, cached {r.cached.status}, cached requests "
                f"{r.cached_requests}: {r.runs[-1].message or r.cached.message}"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    names = [s.name for s in SCENARIOS]
    parser.add_argument("--rows", type=int, default=None, help="distinct uncached rows per scenario (default 2000)")
    parser.add_argument("--quick", action="store_true", help="500 rows (sparse: 50,000 rows, 500 new)")
    parser.add_argument(
        "--scenarios",
        nargs="+",
        choices=names,
        default=[s.name for s in SCENARIOS if s.default],
        metavar="NAME",
        help=f"some of: {' '.join(names)} (default: all but burst and sparse1m)",
    )
    parser.add_argument("--concurrency", type=int, default=None, help="plugin max_concurrency (default: its default)")
    parser.add_argument("--hang-seconds", type=float, default=30.0, help="how long a 'hang' fault holds a connection")
    parser.add_argument("--seed", type=int, default=0, help="seed of the server's latency and fault draws")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds before a dbt run is killed")
    parser.add_argument(
        "--max-runs", type=int, default=3, help="dbt runs allowed per scenario until one succeeds (default 3)"
    )
    parser.add_argument(
        "--lenient", action="store_true", help="the server does not debit rejected requests (providers do)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temp project (logs, DuckDB file)")
    parser.add_argument(
        "--pythonpath", default=None, help="prepended to dbt's PYTHONPATH: a directory holding another dbt_llm to run"
    )
    args = parser.parse_args(argv)
    rows = args.rows if args.rows is not None else (500 if args.quick else 2000)

    root = Path(tempfile.mkdtemp(prefix="dbt_llm_throughput_"))
    results: list[Row] = []
    started = time.perf_counter()
    try:
        print(f"project in {root}", flush=True)
        project = Project(root, args.concurrency, args.timeout, args.pythonpath)
        engine = subprocess.run(
            [sys.executable, "-c", "import dbt_llm.engine as e; print(e.__file__)"],
            env=project.env,
            cwd=root,  # as dbt runs: not from the repo, whose dbt_llm/ would shadow PYTHONPATH
            capture_output=True,
            text=True,
            timeout=60,
        )
        print(f"dbt_llm used by dbt: {engine.stdout.strip() or engine.stderr.strip()[-200:]}", flush=True)
        for scenario in SCENARIOS:
            if scenario.name in args.scenarios:
                results.append(run_scenario(project, scenario, rows, args))
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print_table(results)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    bad = [r.scenario for r in results if not r.ok]
    if bad:
        print(f"FAILED (a dbt run failed or a cached run sent requests): {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
