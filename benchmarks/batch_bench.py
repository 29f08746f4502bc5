"""Batch mode against realtime, and the prefix-cache saving of a long fixed prompt (issue #10).

Run from the repo root (no network: a local fake OpenAI server on 127.0.0.1 answers)::

    .venv/bin/python benchmarks/batch_bench.py [--rows 2000] [--cached-rows 500] [--latency 0.02]
                                               [--batch-delay 5] [--quick] [--keep]

``--quick``: 300 rows, 200 rows in the cached case, a 2 s batch delay.

One throwaway dbt project (this repo as a package, ``dbt run`` as a subprocess) and, for every run,
a fresh DuckDB file and a fresh fake server (tests/openai_server.py) with ``--latency`` seconds per
realtime answer and ``--batch-delay`` seconds from a batch's creation to its completion. The
profile: provider openai, model gpt-4o-mini, gpt-4o-mini's list prices (USD per 1M tokens: input
0.15, output 0.60, cached_input 0.075; batch mode pays half of each), ``batch_poll_interval: 0.2``
(the first poll of a job after 0.2 s, then doubling), everything else at its default.

Case 1, ``mode``: the model ``tickets`` classifies ``--rows`` distinct texts (4 labels), once in
realtime and once with ``--vars '{dbt_llm_mode: batch}'``, each on a fresh file (no cache). Columns:

- ``rows``, ``answered``: rows of the model; rows with a label in the built table.
- ``http``: HTTP requests the server got: chat completions, plus, in batch mode, file uploads, batch
  creations, polls and downloads (``jobs`` batch jobs, from ``llm_batch_jobs``).
- ``ans/req``: answered rows / ``http``: how many answers one request to the provider brings back.
- ``billed``: requests or batch lines the provider billed (``llm_audit.api_calls``);
  ``batch_ans``: rows answered by a batch line (``llm_audit.batch_answers``).
- ``prompt_tok``, ``compl_tok``: tokens from the answers' ``usage`` (``llm_audit``).
- ``usd_per_1k``: ``llm_audit.cost_usd`` / rows x 1,000.
- ``wall_s``: wall time of the ``dbt run`` process (dbt's start-up included);
  ``model_s``: the model node's ``execution_time`` in ``run_results.json``.
- ``cost_x``, ``wall_x``: batch / realtime, for ``usd_per_1k`` and ``wall_s``, from this same run.

The fake's batch delay stands in for the provider's queue: a real Batch API takes minutes to hours
(up to its 24 h completion window), so batch mode is for runs that can wait, and ``wall_x`` here
only shows the overhead of submitting and polling around a delay you choose.

Case 2, ``cached``: the model ``labels100`` classifies ``--cached-rows`` distinct texts into 100
labels with a short description each, plus instructions and two examples, in realtime. That fixed
part is the system message, first in every prompt; its size is printed (characters and tokens at
4 characters a token). Providers cache a prompt prefix of 1,024 tokens or more, in 128-token steps,
and bill those tokens at the cached-input price; the fake server does the same from the second
time it sees a prefix. Columns:

- ``prompt_tok``, ``cached_tok``: prompt tokens, and those served from the prefix cache
  (``llm_audit.cached_prompt_tokens``); ``cached%``: their share.
- ``billed_usd``: ``llm_audit.cost_usd``, cached tokens at the cached-input price.
- ``uncached_usd``: the same tokens if nothing were cached: every prompt token at the input price.
- ``saving%``: 1 - billed / uncached. It comes from the fixed part (labels, instructions,
  examples) being first in every prompt; only the text to classify, after it, is new each time.

The script exits 1 when a run fails, a row has no label, the two modes' labels differ, batch mode
sent realtime requests, or a run's audit differs from what the server billed (its tokens; their
price, half for batch lines): correctness, never timing. Timings depend on the machine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _fake_http import FakeHandler
from openai_server import FakeOpenAI

from dbt_llm.functions.tasks import build_task
from dbt_llm.pricing import Price

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-not-a-secret"
MODEL = "gpt-4o-mini"
PRICE = {"input": 0.15, "output": 0.60, "cached_input": 0.075}  # gpt-4o-mini list prices, USD per 1M tokens
POLL_INTERVAL = 0.2
LABELS = ["billing", "bug", "feature", "other"]
FILLER = "the invoice page shows a total that differs from the amount charged to our card last month"

# 100 labels: 10 areas x 10 kinds, each with a short description, as a real taxonomy would have.
AREAS = {
    "billing": "invoices, charges and refunds",
    "login": "signing in, passwords and sessions",
    "export": "exporting data to files",
    "import": "importing data from files",
    "search": "finding records",
    "reports": "dashboards and scheduled reports",
    "mobile": "the iOS and Android apps",
    "api": "the public REST API and webhooks",
    "sso": "single sign-on with SAML or OIDC",
    "notify": "e-mail and push notifications",
}
KINDS = {
    "bug": "something that used to work is broken",
    "question": "how to do something, nothing is broken",
    "feature": "asks for something new",
    "outage": "nothing works at all for many users",
    "slow": "works but takes far too long",
    "docs": "the documentation is wrong or missing",
    "security": "a possible leak or unauthorised access",
    "pricing": "what it costs or which plan includes it",
    "integration": "a third-party tool does not connect",
    "other": "fits none of the kinds above",
}
LABELS100 = {
    f"{area}_{kind}": f"{kind_desc}, about {area_desc}"
    for area, area_desc in AREAS.items()
    for kind, kind_desc in KINDS.items()
}
INSTRUCTIONS = (
    "Tickets come from customers of a B2B accounting app. Pick the area the customer is working in, "
    "then what kind of message it is; when two labels fit, prefer the one about the area named first."
)
EXAMPLES = [
    {"input": "Since the update the CSV export of my invoices is empty.", "output": {"label": "export_bug"}},
    {"input": "Is single sign-on with Okta part of the Team plan?", "output": {"label": "sso_pricing"}},
]


def classify_sql(source: str, labels: Any, **kwargs: Any) -> str:
    """A table model calling llm_classify; Python literals written as JSON are valid Jinja literals."""
    extra = "".join(f", {name}={json.dumps(value)}" for name, value in kwargs.items())
    call = f"dbt_llm.llm_classify('body', {json.dumps(labels)}{extra})"
    return (
        "{{ config(materialized='table') }}\n"
        f"select id, {{{{ {call} }}}} as label\nfrom {{{{ source('bench', '{source}') }}}}\n"
    )


class CountingServer(FakeOpenAI):
    """The fake server, counting every HTTP request by what it asked for (the fake records batch lines,
    not the requests around them: uploads, creations, polls, downloads)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http: Counter[str] = Counter()
        self._http_lock = threading.Lock()

    def _count(self, kind: str) -> None:
        with self._http_lock:
            self.http[kind] += 1

    def _answer_lines(self, batch: Any, until: float) -> None:
        # The fake schedules a job's last line at (created + phase) + phase, which float rounding can put
        # one ulp after the end of in_progress, created + 2 * phase: that line would end unanswered and go
        # to the realtime fallback. A microsecond of slack keeps the job whole, as a real one would be.
        super()._answer_lines(batch, until + 1e-6)

    def billed(self) -> tuple[int, int, float]:
        """Prompt tokens, completion tokens and USD of every answer the server gave (a 200), batch lines at
        half price: what the audit must say."""
        price = Price(PRICE["input"], PRICE["output"], PRICE["cached_input"])
        answers = [(r, price) for r in self.requests] + [(r, price.for_batch()) for r in self.batch_requests]
        answers = [(r, p) for r, p in answers if r.status == 200]
        usd = sum(p.cost(r.prompt_tokens, r.completion_tokens, r.cached_tokens) for r, p in answers)
        return sum(r.prompt_tokens for r, _ in answers), sum(r.completion_tokens for r, _ in answers), usd

    def _handle_chat(self, handler: FakeHandler, raw: bytes) -> None:
        self._count("chat")
        super()._handle_chat(handler, raw)

    def _handle_extra(self, handler: FakeHandler, method: str, raw: bytes) -> bool:
        handled = super()._handle_extra(handler, method, raw)
        if handled:
            parts = handler.route().split("/")[2:]  # "", "v1", then e.g. "batches", "<id>"
            kind = {
                ("POST", 1, "files"): "upload",
                ("POST", 1, "batches"): "create",
                ("GET", 2, "batches"): "poll",
                ("GET", 3, "files"): "download",
            }.get((method, len(parts), parts[0] if parts else ""), "other")
            self._count(kind)
        return handled


@dataclass
class Run:
    """One `dbt run` of one model on a fresh DuckDB file, and what its audit says."""

    name: str
    rows: int
    answered: int
    http: Counter[str]
    jobs: int
    billed: int
    batch_answers: int
    prompt_tokens: int
    cached_tokens: int
    completion_tokens: int
    cost_usd: float
    wall_s: float
    model_s: float
    labels: dict[int, str]
    server_billed: tuple[int, int, float]  # prompt tokens, completion tokens, USD, from the server's records

    @property
    def requests(self) -> int:
        return sum(self.http.values())

    @property
    def usd_per_1k(self) -> float:
        return self.cost_usd / self.rows * 1000

    @property
    def uncached_usd(self) -> float:
        """What this run's tokens would cost in realtime if no prompt token were served from the cache."""
        return (self.prompt_tokens * PRICE["input"] + self.completion_tokens * PRICE["output"]) / 1e6


class Project:
    """A temp dbt project using this repo as a package; every run gets its own DuckDB file."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.dbt_bin = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"
        self.env = {**os.environ, "BENCH_KEY": API_KEY, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        self.env.pop("OPENAI_API_KEY", None)
        self.runs = 0
        tables = [{"name": "src"}, {"name": "src100"}]
        files: dict[str, Any] = {
            "dbt_project.yml": {"name": "bench", "version": "1.0.0", "config-version": 2, "profile": "bench"},
            "packages.yml": {"packages": [{"local": str(REPO)}]},
            "models/sources.yml": {"version": 2, "sources": [{"name": "bench", "schema": "main", "tables": tables}]},
        }
        for name, content in files.items():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            (root / name).write_text(yaml.safe_dump(content, sort_keys=False))
        (root / "models" / "tickets.sql").write_text(classify_sql("src", LABELS))
        (root / "models" / "labels100.sql").write_text(
            classify_sql("src100", LABELS100, instructions=INSTRUCTIONS, examples=EXAMPLES)
        )
        self.use("deps", "http://127.0.0.1:9/v1")
        self.dbt("deps")

    def use(self, name: str, base_url: str) -> Path:
        """Point the profile at a fresh DuckDB file and at `base_url`; the file's path."""
        db = self.root / f"{name}.duckdb"
        config = {
            "provider": "openai",
            "model": MODEL,
            "base_url": base_url,
            "api_key_env": "BENCH_KEY",
            "prices": {MODEL: PRICE},
            "batch_poll_interval": POLL_INTERVAL,
        }
        output = {
            "type": "duckdb",
            "path": str(db),
            "threads": 1,
            "plugins": [{"module": "dbt_llm.plugin", "config": config}],
        }
        profile = {"bench": {"target": "bench", "outputs": {"bench": output}}}
        (self.root / "profiles.yml").write_text(yaml.safe_dump(profile, sort_keys=False))
        return db

    def dbt(self, *args: str) -> tuple[float, float]:
        """Run dbt as a child process; its wall time and, for `run`, the model node's execution_time."""
        self.runs += 1
        log = self.root / f"dbt_{self.runs}_{args[0]}.out"
        cmd = [self.dbt_bin, *args, "--project-dir", str(self.root), "--profiles-dir", str(self.root)]
        start = time.perf_counter()
        with log.open("w") as out:
            code = subprocess.run(cmd, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT).returncode
        wall = time.perf_counter() - start
        if code != 0:
            sys.exit(f"dbt {' '.join(args)} failed ({code}):\n{log.read_text()[-4000:]}")
        if args[0] != "run":
            return wall, math.nan
        results = json.loads((self.root / "target" / "run_results.json").read_text())["results"]
        return wall, float(results[0]["execution_time"])

    def run(self, name: str, model: str, source: str, rows: int, server: CountingServer, *extra: str) -> Run:
        db = self.use(name, server.base_url)
        with duckdb.connect(str(db)) as con:
            # Distinct texts, so every row is a request (or a batch line) of its own.
            con.execute(
                f"create table {source} as select i as id, 'Ticket ' || i || ' ({source}): {FILLER}' as body"
                f" from range({rows}) t(i)"
            )
        wall, model_s = self.dbt("run", "--select", model, *extra)
        with duckdb.connect(str(db), read_only=True) as con:
            audit = con.execute(
                """select sum(rows), sum(api_calls), sum(coalesce(batch_answers, 0)), sum(prompt_tokens),
                          sum(coalesce(cached_prompt_tokens, 0)), sum(completion_tokens), sum(cost_usd)
                   from dbt_llm.llm_audit where node_id = ?""",
                [f"model.bench.{model}"],
            ).fetchone()
            jobs = con.execute("select count(*) from dbt_llm.llm_batch_jobs").fetchone()
            labels = dict(con.execute(f"select id, label from {model} where label is not null").fetchall())
        assert audit is not None and jobs is not None
        return Run(
            name=name,
            rows=int(audit[0]),
            answered=len(labels),
            http=Counter(server.http),
            jobs=int(jobs[0]),
            billed=int(audit[1]),
            batch_answers=int(audit[2]),
            prompt_tokens=int(audit[3]),
            cached_tokens=int(audit[4]),
            completion_tokens=int(audit[5]),
            cost_usd=float(audit[6]),
            wall_s=wall,
            model_s=model_s,
            labels=labels,
            server_billed=server.billed(),
        )


def server(args: argparse.Namespace) -> CountingServer:
    return CountingServer(latency=args.latency, batch_delay=args.batch_delay, api_key=API_KEY)


def fixed_prompt() -> str:
    """The system message of the 100-label model: the part every one of its prompts starts with."""
    task = build_task(
        {"function": "classify", "labels": LABELS100, "instructions": INSTRUCTIONS, "examples": EXAMPLES},
        provider="openai",
        default_model=MODEL,
        temperature=0.0,
    )
    return task.messages("")[0]["content"]


def table(cols: list[str], rows: list[list[Any]]) -> None:
    widths = [max(len(c), *(len(str(r[i])) for r in rows)) for i, c in enumerate(cols)]
    print("  ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True)))
    for row in rows:
        print("  ".join(f"{v!s:>{w}}" for v, w in zip(row, widths, strict=True)))


def print_modes(realtime: Run, batch: Run) -> None:
    cols = ["mode", "rows", "answered", "http", "jobs", "ans/req", "billed", "batch_ans", "prompt_tok"]
    cols += ["compl_tok", "usd_per_1k", "wall_s", "model_s", "cost_x", "wall_x"]
    rows = []
    for run in (realtime, batch):
        values: list[Any] = [run.name, run.rows, run.answered, run.requests, run.jobs]
        values += [f"{run.answered / run.requests:.1f}", run.billed, run.batch_answers, run.prompt_tokens]
        values += [run.completion_tokens, f"{run.usd_per_1k:.5f}", f"{run.wall_s:.1f}", f"{run.model_s:.1f}"]
        values += [f"{run.usd_per_1k / realtime.usd_per_1k:.2f}", f"{run.wall_s / realtime.wall_s:.2f}"]
        rows.append(values)
    print("\ncase 1: the same model in realtime and in batch mode")
    table(cols, rows)


def print_cached(run: Run, prompt: str) -> None:
    uncached = run.uncached_usd
    print(
        f"\ncase 2: 100 labels; fixed prompt (labels, instructions, examples) {len(prompt)} characters,"
        f" {math.ceil(len(prompt) / 4)} tokens, first in every prompt"
    )
    cols = ["rows", "prompt_tok", "cached_tok", "cached%", "billed_usd", "uncached_usd", "usd_per_1k", "saving%"]
    values: list[Any] = [run.rows, run.prompt_tokens, run.cached_tokens]
    values += [f"{100 * run.cached_tokens / run.prompt_tokens:.1f}", f"{run.cost_usd:.6f}", f"{uncached:.6f}"]
    values += [f"{run.usd_per_1k:.5f}", f"{100 * (1 - run.cost_usd / uncached):.1f}"]
    table(cols, [values])


def problems(realtime: Run, batch: Run, cached: Run) -> list[str]:
    found = [
        f"{r.name}: {r.rows - r.answered} rows without a label"
        for r in (realtime, batch, cached)
        if r.answered != r.rows
    ]
    if batch.labels != realtime.labels:
        found.append("batch and realtime labels differ")
    if batch.http["chat"]:
        found.append(f"batch mode sent {batch.http['chat']} realtime requests")
    # The audit must say what the server billed: its tokens, at the list price realtime and half in batch.
    for r in (realtime, batch, cached):
        prompt, completion, usd = r.server_billed
        same_cost = math.isclose(r.cost_usd, usd, rel_tol=1e-6)
        if (r.prompt_tokens, r.completion_tokens) != (prompt, completion) or not same_cost:
            audit = f"{r.prompt_tokens}+{r.completion_tokens} tokens, ${r.cost_usd:.8f}"
            found.append(f"{r.name}: audit {audit} != server {prompt}+{completion} tokens, ${usd:.8f}")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="distinct rows of case 1 (default 2000, quick 300)")
    parser.add_argument("--cached-rows", type=int, default=None, help="rows of case 2 (default 500, quick 200)")
    parser.add_argument("--latency", type=float, default=0.02, help="fake server seconds per realtime answer")
    parser.add_argument(
        "--batch-delay", type=float, default=None, help="seconds a batch job takes (default 5, quick 2)"
    )
    parser.add_argument("--quick", action="store_true", help="300 rows, 200 in case 2, batch delay 2 s")
    parser.add_argument("--keep", action="store_true", help="keep the temp project (logs, DuckDB files)")
    args = parser.parse_args(argv)
    rows = args.rows if args.rows is not None else (300 if args.quick else 2000)
    cached_rows = args.cached_rows if args.cached_rows is not None else (200 if args.quick else 500)
    if args.batch_delay is None:
        args.batch_delay = 2.0 if args.quick else 5.0

    root = Path(tempfile.mkdtemp(prefix="dbt_llm_batch_bench_"))
    started = time.perf_counter()
    try:
        print(f"project in {root}; latency {args.latency:g}s per answer, batch delay {args.batch_delay:g}s", flush=True)
        project = Project(root)
        runs: list[Run] = []
        for name, model, source, n, extra in [
            ("realtime", "tickets", "src", rows, ()),
            ("batch", "tickets", "src", rows, ("--vars", "{dbt_llm_mode: batch}")),
            ("cached", "labels100", "src100", cached_rows, ()),
        ]:
            with server(args) as fake:
                run = project.run(name, model, source, n, fake, *extra)
            runs.append(run)
            http = ", ".join(f"{kind} {count}" for kind, count in sorted(run.http.items()))
            print(f"[{name}] {run.answered}/{run.rows} rows answered in {run.wall_s:.1f}s; http: {http}", flush=True)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    realtime, batch, cached = runs
    print_modes(realtime, batch)
    print_cached(cached, fixed_prompt())
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    found = problems(realtime, batch, cached)
    for problem in found:
        print(f"FAILED: {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
