"""What counting rows costs on the cached path, in plain DuckDB (no dbt, no plugin).

    python benchmarks/row_counter_bench.py [--rows 1000000] [--distinct 2000] [--reruns 5]

Builds a DuckDB file of ROWS rows over DISTINCT texts, all in a cache table, and times the cached
path's statement (`create table as select ..., (cache subquery)`) with each way of counting its rows
wrapped around the answer, as a ratio to the same statement without a counter, medians of RERUNS
alternating runs. Then the lean per-chunk counter again while another Python thread runs: a chunk's
call waits for the GIL, so a busy thread in the process decides what a UDF counter costs.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

CACHED = "(select max(c.result) from cache c where c.key = sha256('h' || body))"


class Counter:
    def __init__(self) -> None:
        self.rows = 0
        self.lock = threading.Lock()

    def lean(self, flags: pa.Array) -> pa.Array:
        with self.lock:
            self.rows += len(flags)
        return flags

    def building(self, flags: pa.Array) -> pa.Array:
        with self.lock:
            self.rows += len(flags)
        return pa.array([True] * len(flags))


def _connect(path: Path, rows: int, distinct: int, counter: Counter) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect(str(path))
    texts = "'text number ' || (i % {n})"
    con.execute(f"create table raw as select i as id, {texts.format(n=distinct)} as body from range({rows}) t(i)")
    con.execute(
        f"create table cache as select sha256('h' || {texts.format(n=distinct)}) as key, 'x' as result "
        f"from range({distinct}) t(i)"
    )
    con.execute("create sequence committed_seq")
    for name, fn in (("lean_udf", counter.lean), ("building_udf", counter.building)):
        con.create_function(name, fn, ["BOOLEAN"], "BOOLEAN", type="arrow", side_effects=True)  # type: ignore[call-overload]
    return con


def _statement(counter: str | None) -> str:
    answer = CACHED if counter is None else f"(case when {counter} then {CACHED} end)"
    return f"create or replace table out as select id, {answer} as r from raw"


VARIANTS: dict[str, str | None] = {
    "no counter": None,
    "case on a column (id >= 0)": "id >= 0",
    "random() >= 0": "random() >= 0",
    "nextval(), committed sequence": "nextval('committed_seq') > 0",
    "nextval(), temporary sequence": "nextval('temp_seq') > 0",
    "arrow UDF, returns its input": "lean_udf(true)",
    "arrow UDF, builds its answer": "building_udf(true)",
}


def _time(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    started = time.perf_counter()
    con.execute(sql)
    return time.perf_counter() - started


def _medians(con: duckdb.DuckDBPyConnection, variants: dict[str, str | None], reruns: int) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(reruns):
        con.execute("create or replace temp sequence temp_seq")
        for name, counter in variants.items():
            times[name].append(_time(con, _statement(counter)))
    return {name: statistics.median(values) for name, values in times.items()}


def _beside(target: Callable[[threading.Event], None], run: Callable[[], dict[str, float]]) -> dict[str, float]:
    stop = threading.Event()
    thread = threading.Thread(target=target, args=(stop,), daemon=True)
    thread.start()
    try:
        return run()
    finally:
        stop.set()
        thread.join()


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(100))


def _sleep(stop: threading.Event) -> None:
    while not stop.is_set():
        time.sleep(0.001)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=1_000_000)
    p.add_argument("--distinct", type=int, default=2000)
    p.add_argument("--reruns", type=int, default=5)
    args = p.parse_args()
    counter = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        con = _connect(Path(tmp) / "bench.duckdb", args.rows, args.distinct, counter)
        medians = _medians(con, VARIANTS, args.reruns)
        base = medians["no counter"]
        print(f"{args.rows:,} cached rows over {args.distinct:,} texts, median of {args.reruns}")
        for name, seconds in medians.items():
            print(f"  {name:34s} {seconds:6.3f} s  {seconds / base:5.2f}x")
        pair = {"no counter": None, "arrow UDF, returns its input": "lean_udf(true)"}
        for label, target in (("a thread running Python", _spin), ("a thread sleeping 1 ms at a time", _sleep)):
            m = _beside(target, lambda: _medians(con, pair, args.reruns))
            ratio = m["arrow UDF, returns its input"] / m["no counter"]
            print(f"  lean UDF beside {label}: {ratio:5.2f}x the statement without a counter")
        con.close()


if __name__ == "__main__":
    main()
