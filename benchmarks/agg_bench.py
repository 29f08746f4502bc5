"""Benchmark of llm_agg's incremental tree: what a change to a group costs, against rebuilding it.

Run from the repo root (no network: a local fake OpenAI server answers, in this process)::

    .venv/bin/python benchmarks/agg_bench.py [--sizes 100,1000,3000] [--k 3] [--max-input-chars 2000]

For each group size N, one throwaway dbt project on a fresh DuckDB file holds a table of N distinct
reviews of one product and a model ``agg`` (``llm_agg('review', ...) ... group by product``). It runs
``dbt run`` (in process) for: the first build, a rerun, the same rows in another order, k texts added,
and k texts removed (from the first texts). After each change it deletes llm_cache and runs again:
that rebuild of the group from scratch, measured in the same run, is the baseline.

Columns: ``calls`` and ``tokens`` (prompt + completion, as the server counted them) of each run, and
``vs rebuild``: calls of the change / calls of its rebuild. The script exits 1 when a rerun or a
reordering sends a request, or a change costs as much as its rebuild: correctness, never timing.
The fake server answers ``Reply to: <input>``, so its merge answers grow with the group, unlike a
model's (bounded by max_tokens): tokens here overstate what merges cost; calls do not.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
from pathlib import Path

import duckdb
import yaml
from dbt.cli.main import dbtRunner

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

from openai_server import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
MODEL = "gpt-4o-mini"
WORDS = ["late", "broken", "refund", "great", "slow", "support", "price", "box", "color", "size", "lid", "smell"]
SQL = (
    "{{ config(materialized='table') }}\n"
    "select product, {{ dbt_llm.llm_agg('review', 'What do customers complain about? Three bullet points.') }}"
    " as complaints from {{ source('raw', 'reviews') }} group by product\n"
)


def reviews(n: int, seed: int = 0, start: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [f"review {start + i}: " + " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14))) for i in range(n)]


class Project:
    def __init__(self, root: Path, server: FakeOpenAI, max_input_chars: int) -> None:
        self.root, self.server, self.db = root, server, root / "bench.duckdb"
        (root / "models").mkdir(parents=True)
        (root / "dbt_project.yml").write_text("name: agg_bench\nversion: '1.0.0'\nconfig-version: 2\nprofile: bench\n")
        (root / "packages.yml").write_text(yaml.safe_dump({"packages": [{"local": str(REPO)}]}))
        (root / "models" / "agg.sql").write_text(SQL)
        sources = {"version": 2, "sources": [{"name": "raw", "schema": "main", "tables": [{"name": "reviews"}]}]}
        (root / "models" / "sources.yml").write_text(yaml.safe_dump(sources))
        config = {"provider": "openai", "model": MODEL, "base_url": server.base_url, "api_key_env": "BENCH_KEY"}
        config["max_input_chars"] = max_input_chars
        output = {"type": "duckdb", "path": str(self.db), "threads": 1}
        output["plugins"] = [{"module": "dbt_llm.plugin", "config": config}]
        profile = {"bench": {"target": "bench", "outputs": {"bench": output}}}
        (root / "profiles.yml").write_text(yaml.safe_dump(profile))
        self.dbt("deps")

    def dbt(self, *args: str) -> None:
        result = dbtRunner().invoke(
            [*args, "--quiet", "--project-dir", str(self.root), "--profiles-dir", str(self.root)]
        )
        if not result.success:
            sys.exit(f"dbt {' '.join(args)} failed: {result.exception}")

    def run(self, texts: list[str], *, fresh: bool = False) -> tuple[int, int]:
        """Calls and tokens of one `dbt run` over `texts` (with an empty cache when `fresh`)."""
        with duckdb.connect(str(self.db)) as con:
            con.execute("create or replace table main.reviews (product varchar, review varchar)")
            con.executemany("insert into main.reviews values ('p', ?)", [[t] for t in texts])
            if fresh:
                con.execute("delete from dbt_llm.llm_cache")
        self.server.reset()
        self.dbt("run")
        sent = self.server.requests
        return len(sent), sum(r.prompt_tokens + r.completion_tokens for r in sent)


def bench(size: int, k: int, max_input_chars: int) -> list[tuple[str, int, int, float | None]]:
    with FakeOpenAI() as server, tempfile.TemporaryDirectory() as tmp:
        project = Project(Path(tmp) / "project", server, max_input_chars)
        texts = reviews(size)
        shuffled = texts[:]
        random.Random(1).shuffle(shuffled)
        rows: list[tuple[str, int, int, float | None]] = []
        calls, tokens = project.run(texts)
        rows.append(("first build", calls, tokens, 1.0))
        rows.append(("rerun", *project.run(texts), 0.0))
        rows.append(("reordered", *project.run(shuffled), 0.0))
        dropped = {(j + 1) * size // (k + 1) for j in range(k)}  # k texts spread over the group
        changes = {
            f"+{k} texts": texts + reviews(k, seed=9, start=size),
            f"-{k} texts": [t for i, t in enumerate(texts) if i not in dropped],
        }
        for name, changed in changes.items():
            project.run(texts)  # back to the first texts: cached
            calls, tokens = project.run(changed)
            rebuild, rebuild_tokens = project.run(changed, fresh=True)
            rows.append((name, calls, tokens, calls / rebuild))
            rows.append((f"rebuild ({name})", rebuild, rebuild_tokens, 1.0))
        return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100,1000,3000", help="group sizes, comma-separated")
    parser.add_argument("--k", type=int, default=3, help="texts added, then removed")
    parser.add_argument("--max-input-chars", type=int, default=2000)
    args = parser.parse_args(argv)
    os.environ.setdefault("BENCH_KEY", "bench")
    os.environ.setdefault("DBT_SEND_ANONYMOUS_USAGE_STATS", "false")
    ok = True
    print("| texts | run | calls | tokens | vs rebuild |\n|---:|---|---:|---:|---:|")
    for size in (int(s) for s in args.sizes.split(",")):
        for name, calls, tokens, ratio in bench(size, args.k, args.max_input_chars):
            print(f"| {size} | {name} | {calls} | {tokens} | {'' if ratio is None else f'{ratio:.3f}'} |", flush=True)
            ok &= not (name in ("rerun", "reordered") and calls) and not (name[0] in "+-" and (ratio or 0) >= 1)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
