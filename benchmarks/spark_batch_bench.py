"""Batch mode against realtime on Spark (`dbt-llm spark`, a local session): job sizes, wait and cost.

Run from the repo root (no network: a local fake OpenAI server on 127.0.0.1 answers, its Batch API too;
needs the spark extra and Java 17)::

    .venv/bin/python benchmarks/spark_batch_bench.py [--rows 900] [--distinct 300] [--batch-delay 30]

One model classifies ``--rows`` tickets of ``--distinct`` texts, once in batch mode and once realtime, each
in a fresh project against a fresh fake server (answers in 50 ms; a batch job ends ``--batch-delay``
seconds after it is created). Prints per mode: the model's time as dbt reports it, the jobs' line counts,
realtime requests, and the audit's calls, batch answers, tokens and cost; then the cost ratio.

Exits 1 when batch mode sent anything realtime, the tokens differ, or the ratio is not the batch price's.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_server import FakeOpenAI  # type: ignore[import-not-found]
from spark_project import SparkProject  # type: ignore[import-not-found]

KEY = "sk-bench"
TICKETS = (
    "select id, concat('ticket about ', case id % 3 when 0 then 'billing' when 1 then 'bug' else 'other' end, "
    "' number ', cast(id % {distinct} as string)) as body from range({rows}) t(id)"
)
ENRICHED = (
    "select id, body, {{ dbt_llm.llm_classify('body', ['billing', 'bug', 'other']) }} as category "
    "from {{ ref('tickets') }}"
)


def run(mode: str, root: Path, args: argparse.Namespace) -> tuple[int, int, float]:
    with FakeOpenAI(api_key=KEY, latency=0.05, batch_delay=args.batch_delay) as server:
        project = SparkProject(root, server.base_url, KEY, config={"batch_poll_interval": 1.0})
        project.write("models/tickets.sql", TICKETS.format(rows=args.rows, distinct=args.distinct))
        project.write("models/enriched.sql", ENRICHED)
        project.dbt("deps")
        project.dbt("run", "--select", "tickets")
        done = project.dbt("run", "--select", "enriched", "--vars", "{dbt_llm_mode: " + mode + "}")
        took = re.search(r"enriched \.+ \[.*?OK.*? in ([0-9.]+)s", done.stdout)
        ((calls, answers, prompt, completion, cost),) = project.query(
            "select api_calls, batch_answers, prompt_tokens, completion_tokens, cost_usd from {dbt_llm.llm_audit}"
        )
        jobs = [len(batch.custom_ids) for batch in server.batches]
        print(
            f"{mode:9} model {took.group(1) if took else '?'} s  jobs {jobs}  realtime {len(server.requests)}  "
            f"calls {calls}  batch_answers {answers}  tokens {prompt}+{completion}  cost ${cost:.6f}"
        )
        if mode == "batch" and server.requests:
            sys.exit("batch mode sent requests realtime")
        return prompt, completion, float(cost)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=900)
    parser.add_argument("--distinct", type=int, default=300, help="a multiple of 3")
    parser.add_argument("--batch-delay", type=float, default=30.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        batch = run("batch", Path(tmp) / "batch", args)
        realtime = run("realtime", Path(tmp) / "realtime", args)
    ratio = batch[2] / realtime[2]
    print(f"cost ratio batch / realtime: {ratio:.2f}")
    if batch[:2] != realtime[:2] or abs(ratio - 0.5) > 1e-6:
        sys.exit("the tokens differ, or batch mode was not priced at half the list price")


if __name__ == "__main__":
    main()
