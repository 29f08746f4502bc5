"""Benchmark of the dbt-llm cache path: one API call per distinct text, then none.

Run from the repo root (no network: a local fake OpenAI server answers)::

    .venv/bin/python benchmarks/cache_bench.py [--rows 10000] [--distinct 2000] [--reruns 3]
                                               [--big-rows 1000000] [--skip-big] [--latency 0.0]

For each case ("small": --rows, "big": --big-rows; both with --distinct texts) it builds a
throwaway dbt project on a fresh DuckDB file whose source table ``src`` has ``rows`` rows
and ``distinct`` distinct texts, and one model ``bench`` (materialized table) that runs
``llm_classify`` on every row. ``dbt run`` runs once, then ``--reruns`` times fully cached, each
time as a subprocess. From the first rerun on, the project has a second model, ``bench_join``: the
plain join below as a dbt table model, so each rerun builds the cached model and the plain join in
the same ``dbt run``, one after the other on the same file (the join first on every other rerun),
both after ``bench_warm``, which reads ``src`` and ``llm_cache`` and runs the plain join once first
(each rerun is a new process: its buffer pool is cold, its first hash join allocates its memory).

Columns of the final table:

- ``calls/distinct``: requests the fake server got on the first run / distinct texts.
  Must be 1.00: every distinct text is paid for once, repeated texts are not.
- ``rerun_calls``: requests on the fully cached reruns. Must be 0.
- ``first_s``, ``wall_s``: wall time of the whole first / a rerun's ``dbt run`` process
  (includes dbt's start-up, parsing and compilation).
- ``rerun_s``: ``execution_time`` of the model node in a rerun's ``run_results.json``,
  i.e. the cached path without dbt's start-up: compiling the model (one
  ``dbt_llm_prepare`` query), the ``create table ... as select`` with its cache join,
  and the ``dbt_llm_finish`` post-hook.
- ``query_s``: the time dbt's debug log (``logs/dbt.log``) gives that ``create table ...
  as select`` statement alone: the model statement, without dbt's own work around it.
- ``jstmt_s``, ``jnode_s``: the same two times of ``bench_join`` (the plain join as a dbt
  model) in the same ``dbt run``; ``stmt_x`` = ``query_s / jstmt_s`` and ``node_x`` =
  ``rerun_s / jnode_s``: the model statement and the model node against the plain join's,
  measured in one run. Each figure is the rerun with the median ``stmt_x``.
- ``join_s``: best of 3 of the plain SQL an ideal cache would cost, run with the duckdb
  Python API on the same file after the rerun::

      create or replace table baseline as
      select s.id, c.result ->> '$.label' as label
      from src s left join dbt_llm.llm_cache c on c.key = sha256('<spec_hash>' || s.body)

  (``spec_hash`` is read from the model's compiled SQL in ``target/run``).
- ``ratio``: ``rerun_s / join_s``; ``q_ratio``: ``query_s / join_s``, the overhead of the
  cached path over the bare join with and without dbt's per-model work (``join_s`` runs after
  the reruns, in another process: ``stmt_x`` is the like-for-like figure).
- ``peak_MB``: peak resident memory of the rerun's dbt process (``ru_maxrss`` from
  ``os.wait4`` on that very child: exact, per process, no extra dependency; Unix only).
  The first run's peak is printed in the progress lines.

The script also checks that the model's labels equal the baseline's (``label_diff``).
It exits 1 only when ``calls/distinct`` is not 1.00, ``rerun_calls`` is not 0, or labels
differ: correctness, never timing. Timings depend on the machine; nothing asserts them.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-not-a-secret"
LABELS = ["billing", "bug", "feature", "other"]
MODEL_SQL = f"""{{{{ config(materialized='table') }}}}
select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as label
from {{{{ source('bench', 'src') }}}}
"""
# The reruns read src and llm_cache from a cold buffer pool (a new process each time): this model reads
# them first, and runs the plain join once (the first hash join of a process also pays for its memory),
# so neither of the two models measured pays for it.
WARM_SQL = """{{{{ config(materialized='table') }}}}
select count(*) as n, max(length(body)) as chars from {{{{ source('bench', 'src') }}}}
union all select count(*), max(length(key) + length(result)) from dbt_llm.llm_cache
union all select count(*), max(length(label)) from ({join})
"""
WARM_REF = "-- depends_on: {{ ref('bench_warm') }}\n"
PLAIN_JOIN = """select s.id, c.result ->> '$.label' as label
from {{{{ source('bench', 'src') }}}} s left join dbt_llm.llm_cache c on c.key = sha256('{spec_hash}' || s.body)"""
JOIN_SQL = "{{{{ config(materialized='table') }}}}\n" + PLAIN_JOIN + "\n"
MODEL_ID = "model.bench.bench"
JOIN_ID = "model.bench.bench_join"


@dataclass
class DbtRun:
    wall_s: float
    peak_mb: float
    model_s: float
    query_s: float
    calls: int
    join_node_s: float = float("nan")
    join_stmt_s: float = float("nan")

    @property
    def stmt_x(self) -> float:
        return self.query_s / self.join_stmt_s


@dataclass
class Result:
    case: str
    rows: int
    distinct: int
    first: DbtRun
    rerun: DbtRun
    join_s: float
    label_diff: int

    @property
    def calls_per_distinct(self) -> float:
        return self.first.calls / self.distinct

    @property
    def ok(self) -> bool:
        return f"{self.calls_per_distinct:.2f}" == "1.00" and self.rerun.calls == 0 and self.label_diff == 0


def ctas_seconds(log: str, relation: str = "bench") -> float:
    """The time dbt's debug log gives a model's `create table ... as select` statement."""
    parts = re.split(r"SQL status: \S+ in ([0-9.]+) seconds", log)
    for sql, seconds in zip(parts[::2], parts[1::2], strict=False):
        if re.search(rf'create\s+table\s+\S+\."{relation}__dbt_tmp"', sql):
            return float(seconds)
    return float("nan")


class Project:
    """A temp dbt project using this repo as a package, its source table made with SQL."""

    def __init__(self, root: Path, server: FakeOpenAI, rows: int, distinct: int, concurrency: int) -> None:
        self.root, self.server = root, server
        self.db = root / "bench.duckdb"
        self.dbt_bin = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"
        self.env = {**os.environ, "BENCH_KEY": API_KEY, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        self.env.pop("OPENAI_API_KEY", None)
        self.runs = 0
        files = {
            "dbt_project.yml": {"name": "bench", "version": "1.0.0", "config-version": 2, "profile": "bench"},
            "packages.yml": {"packages": [{"local": str(REPO)}]},
            "models/sources.yml": {
                "version": 2,
                "sources": [{"name": "bench", "schema": "main", "tables": [{"name": "src"}]}],
            },
            "profiles.yml": {
                "bench": {
                    "target": "bench",
                    "outputs": {
                        "bench": {
                            "type": "duckdb",
                            "path": str(self.db),
                            "threads": 1,
                            "plugins": [
                                {
                                    "module": "dbt_llm.plugin",
                                    "config": {
                                        "provider": "openai",
                                        "model": "gpt-4o-mini",
                                        "base_url": server.base_url,
                                        "api_key_env": "BENCH_KEY",
                                        "max_concurrency": concurrency,
                                        "prices": {"gpt-4o-mini": {"input": 0.15, "output": 0.6}},
                                    },
                                }
                            ],
                        }
                    },
                }
            },
        }
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(yaml.safe_dump(content, sort_keys=False))
        (root / "models" / "bench.sql").write_text(MODEL_SQL)
        with duckdb.connect(str(self.db)) as con:
            con.execute(
                f"create table src as select i as id, 'ticket text number ' || (i % {distinct}) || ' about billing'"
                f" as body from range({rows}) t(i)"
            )
        self.dbt("deps")

    def dbt(self, *args: str) -> DbtRun:
        """Run dbt as a child process; its own peak RSS comes from wait4's rusage."""
        self.runs += 1
        self.server.reset()
        log = self.root / f"dbt_{self.runs}_{args[0]}.out"
        cmd = [self.dbt_bin, *args, "--project-dir", str(self.root), "--profiles-dir", str(self.root)]
        dbt_log = self.root / "logs" / "dbt.log"
        log_start = dbt_log.stat().st_size if dbt_log.exists() else 0
        start = time.perf_counter()
        with log.open("w") as out:
            proc = subprocess.Popen(cmd, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT)
            _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            sys.exit(f"dbt {' '.join(args)} failed ({proc.returncode}):\n{log.read_text()[-4000:]}")
        # ru_maxrss is in KiB on Linux (bytes on macOS).
        peak_mb = usage.ru_maxrss / (1024 * 1024 if sys.platform == "darwin" else 1024)
        run = DbtRun(wall, peak_mb, float("nan"), float("nan"), len(self.server.requests))
        if args[0] == "run":
            results = json.loads((self.root / "target" / "run_results.json").read_text())["results"]
            times = {r["unique_id"]: r["execution_time"] for r in results}
            run.model_s, run.join_node_s = times[MODEL_ID], times.get(JOIN_ID, float("nan"))
            with dbt_log.open(errors="replace") as f:
                f.seek(log_start)
                log_text = f.read()
            run.query_s, run.join_stmt_s = ctas_seconds(log_text), ctas_seconds(log_text, "bench_join")
        return run

    def spec_hash(self) -> str:
        compiled = (self.root / "target" / "run" / "bench" / "models" / "bench.sql").read_text()
        match = re.search(r"sha256\('([0-9a-f]{64})'", compiled)
        assert match, "no spec hash in the compiled model"
        return match.group(1)

    def add_join_model(self, join_first: bool) -> None:
        """The plain join as a dbt model, built by the reruns next to the cached model: first on every
        other rerun, so neither of the two gains from running second."""
        models, spec_hash = self.root / "models", self.spec_hash()
        first, second = ("bench_join", "bench") if join_first else ("bench", "bench_join")
        after = {first: WARM_REF, second: WARM_REF + f"-- depends_on: {{{{ ref('{first}') }}}}\n"}
        (models / "bench_join.sql").write_text(after["bench_join"] + JOIN_SQL.format(spec_hash=spec_hash))
        (models / "bench_warm.sql").write_text(WARM_SQL.format(join=PLAIN_JOIN.format(spec_hash=spec_hash)))
        (models / "bench.sql").write_text(after["bench"] + MODEL_SQL)  # the same call: the same cache keys

    def baseline(self, repeat: int = 3) -> tuple[float, int]:
        """Best-of-`repeat` time of the plain LEFT JOIN on the cache, and rows whose label differs."""
        sql = f"""create or replace table baseline as
                  select s.id, c.result ->> '$.label' as label
                  from src s left join dbt_llm.llm_cache c on c.key = sha256('{self.spec_hash()}' || s.body)"""
        with duckdb.connect(str(self.db)) as con:
            times = []
            for _ in range(repeat):
                start = time.perf_counter()
                con.execute(sql)
                times.append(time.perf_counter() - start)
            diff = con.execute(
                "select count(*) from bench b full join baseline j using (id) where b.label is distinct from j.label"
            ).fetchone()
        return min(times), int(diff[0]) if diff else -1


def run_case(case: str, rows: int, distinct: int, server: FakeOpenAI, opts: argparse.Namespace) -> Result:
    root = Path(tempfile.mkdtemp(prefix=f"dbt_llm_bench_{case}_"))
    try:
        print(f"[{case}] {rows} rows, {distinct} distinct texts in {root}", flush=True)
        project = Project(root, server, rows, distinct, opts.concurrency)
        with duckdb.connect(str(project.db), read_only=True) as con:
            row = con.execute("select count(distinct body) from src").fetchone()
        n_distinct = int(row[0]) if row else 0
        first = project.dbt("run")
        print(f"[{case}] first run: {first.calls} calls, {first.wall_s:.2f}s, {first.peak_mb:.0f} MB", flush=True)
        reruns = []
        for i in range(max(opts.reruns, 1)):
            project.add_join_model(join_first=i % 2 == 1)
            rerun = project.dbt("run")
            reruns.append(rerun)
            print(
                f"[{case}] rerun: {rerun.calls} calls, model statement {rerun.query_s:.3f}s, plain join's "
                f"{rerun.join_stmt_s:.3f}s ({rerun.stmt_x:.2f}x); model node {rerun.model_s:.2f}s, "
                f"plain join's {rerun.join_node_s:.2f}s",
                flush=True,
            )
        median = sorted(reruns, key=lambda r: r.stmt_x)[len(reruns) // 2]
        median.calls = sum(r.calls for r in reruns)
        join_s, label_diff = project.baseline()
        return Result(case, rows, n_distinct, first, median, join_s, label_diff)
    finally:
        if opts.keep:
            print(f"[{case}] kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


def print_table(results: list[Result]) -> None:
    cols = ["case", "rows", "distinct", "calls/distinct", "rerun_calls", "first_s", "wall_s", "rerun_s", "query_s"]
    cols += ["jnode_s", "jstmt_s", "node_x", "stmt_x", "join_s", "ratio", "q_ratio", "peak_MB", "label_diff"]
    print("\n" + "  ".join(f"{c:>{max(len(c), 7)}}" for c in cols))
    for r in results:
        values = [r.case, r.rows, r.distinct, f"{r.calls_per_distinct:.2f}", r.rerun.calls, f"{r.first.wall_s:.2f}"]
        values += [f"{r.rerun.wall_s:.2f}", f"{r.rerun.model_s:.2f}", f"{r.rerun.query_s:.3f}"]
        values += [f"{r.rerun.join_node_s:.2f}", f"{r.rerun.join_stmt_s:.3f}"]
        values += [f"{r.rerun.model_s / r.rerun.join_node_s:.2f}", f"{r.rerun.stmt_x:.2f}", f"{r.join_s:.3f}"]
        values += [f"{r.rerun.model_s / r.join_s:.1f}", f"{r.rerun.query_s / r.join_s:.1f}"]
        values += [f"{r.rerun.peak_mb:.0f}", r.label_diff]
        print("  ".join(f"{v:>{max(len(c), 7)}}" for c, v in zip(cols, values, strict=True)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=10_000, help="rows of the small case")
    parser.add_argument("--distinct", type=int, default=2_000, help="distinct texts in both cases")
    parser.add_argument("--big-rows", type=int, default=1_000_000, help="rows of the big case")
    parser.add_argument("--skip-big", action="store_true", help="run the small case only")
    parser.add_argument("--latency", type=float, default=0.0, help="fake server seconds per answer")
    parser.add_argument("--concurrency", type=int, default=16, help="plugin max_concurrency")
    parser.add_argument("--reruns", type=int, default=3, help="fully cached reruns (the median is shown)")
    parser.add_argument("--keep", action="store_true", help="keep the temp projects (logs, DuckDB files)")
    args = parser.parse_args(argv)

    cases = [("small", args.rows)] + ([] if args.skip_big else [("big", args.big_rows)])
    results: list[Result] = []
    with FakeOpenAI(latency=args.latency, api_key=API_KEY) as server:
        for case, rows in cases:
            results.append(run_case(case, rows, args.distinct, server, args))
    print_table(results)
    bad = [r.case for r in results if not r.ok]
    if bad:
        print(f"FAILED (calls/distinct != 1.00, rerun calls != 0 or labels differ): {', '.join(bad)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
