"""Rows packed per request (``rows_per_request``): what sending K texts in one request saves.

Run from the repo root (no network: a local fake OpenAI server on 127.0.0.1 answers)::

    .venv/bin/python benchmarks/pack_bench.py [--rows 1000] [--labels 30] [--ks 1,4,8,16]
                                              [--latency 0.02] [--faults] [--seed 7] [--quick] [--keep]

``--quick``: 300 rows. K=1 is always run, first: it is the baseline of the ratios.

One throwaway dbt project (this repo as a package, ``dbt run`` as a subprocess) and, for every K, a
fresh DuckDB file (no cache) and a fresh fake server (tests/openai_server.py) answering in ``--latency``
seconds. The model classifies ``--rows`` distinct support-ticket texts into ``--labels`` labels, each
with a short description (the fixed prompt; its size is printed), with ``rows_per_request=K`` as the
macro argument. Profile: provider openai, gpt-4o-mini at its list prices (USD per 1M tokens: input
0.15, output 0.60, cached_input 0.075), one dbt thread, ``on_error: null`` (a row left without an
answer is counted, not a failed run), everything else at its default. The fake counts a token per 4
characters of the messages (prompt) and of the answer (completion).
``--faults``: the fake faults at random, seeded by ``--seed``: ``500`` on 2% of requests and, on the
others, ``invalid`` on 5% of rows (drawn per row of a pack); the table gets a ``retries`` column.
Columns:

- ``K``: rows_per_request; ``rows``: rows of the model; ``answered``: rows with a label in the table.
- ``requests``: ``llm_audit.api_calls`` (checked against the requests the server got);
  ``retries``: ``llm_audit.retries``, requests sent again after a failure or an invalid row.
- ``rows_per_call``: ``llm_audit.rows_per_call``: rows answered by the requests / requests (below K
  when requests failed, or packs were split or re-sent smaller).
- ``prompt_tok/row``, ``compl_tok/row``: tokens from the answers' ``usage`` (``llm_audit``) / rows.
- ``usd_per_1k``: ``llm_audit.cost_usd`` / rows x 1,000.
- ``wall_s``: wall time of the ``dbt run`` process, dbt's start-up (several seconds) included.
- ``prompt_x``, ``cost_x``, ``requests_x``, ``wall_x``: this K / K=1, for prompt tokens per row,
  ``usd_per_1k``, ``requests`` and ``wall_s``, from this same run.

Prints a FAILED line and exits 1 when a row has no label or a run's audit differs from what the
server counted (requests; prompt and completion tokens of its answers), and exits 1 when a dbt run
fails: correctness, never timing. Timings depend on the machine; without ``--faults``, tokens and
cost depend only on the texts and labels.
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
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from openai_server import FakeOpenAI  # type: ignore[import-not-found]

from dbt_llm.functions.tasks import build_task

REPO = Path(__file__).resolve().parent.parent
API_KEY = "bench-key-not-a-secret"
MODEL = "gpt-4o-mini"
PRICE = {"input": 0.15, "output": 0.60, "cached_input": 0.075}  # gpt-4o-mini list prices, USD per 1M tokens
FAULT_RATES = {"invalid": 0.05, "500": 0.02}

# label | its description (the prompt shows it) | a ticket sentence that belongs under it
TAXONOMY_TEXT = """
billing_dispute | disputes a charge or an amount billed | we were charged twice for the March invoice
refund_request | asks for money back | please refund the annual plan we bought by mistake
invoice_copy | needs an invoice or receipt, or a change to one | I need last month's invoice with our VAT number
payment_failed | a card or bank payment was declined | our card payment keeps getting declined at checkout
plan_upgrade | wants a bigger plan or more seats | how do we move from Starter to the Team plan?
plan_downgrade | wants a smaller plan or fewer seats | we want to drop to 5 seats from next month
cancel_subscription | wants to stop paying and close the account | please cancel us at the end of the term
login_problem | cannot sign in, other than a forgotten password | the login page just reloads after I sign in
password_reset | forgot a password or the reset mail does not come | the password reset email never arrives
two_factor | lost or broken two-factor authentication | I got a new phone and lost my 2FA codes
account_locked | the account is locked or suspended | my account is locked after too many attempts
sso_setup | setting up SAML or OIDC single sign-on | our Okta SAML setup fails with an audience mismatch
user_management | inviting or removing users, changing their roles | how do I make a colleague an admin?
data_export | exporting data to CSV, Excel or PDF | the CSV export of transactions comes out empty
data_import | importing data from files | importing our customer list fails on row 12
report_wrong | a report or dashboard shows wrong numbers | the monthly revenue report double counts refunds
dashboard_slow | pages or dashboards load slowly | the dashboard takes over a minute to load
api_error | the REST API returns errors | the API returns 500 on POST /v2/orders since this morning
webhook_failure | webhooks are not delivered or fail | our webhook endpoint stopped receiving events
integration_broken | a third-party integration does not connect | the Salesforce sync disconnected again
mobile_app_crash | the iOS or Android app crashes or misbehaves | the Android app crashes when I open a receipt
notification_missing | e-mail or push notifications missing or too many | we no longer get the daily summary e-mail
feature_request | asks for something the product does not do | it would be great to schedule exports weekly
bug_report | something that used to work is broken | the date filter ignores the end date since the update
outage | nothing works, for many users | nobody on our team can load the app at all
security_concern | a possible leak, phishing or unauthorised access | we got a suspicious email asking for our login
privacy_request | GDPR: delete or hand over personal data | please delete all personal data you hold about me
documentation | the docs are wrong, unclear or missing | the API docs still show the old auth header
onboarding_help | a new customer asks how to get started | we just signed up, where do we start with setup?
other | fits none of the labels above | do you have an office in Lisbon?
"""
TAXONOMY = {
    name: (desc, text) for name, desc, text in (line.split(" | ") for line in TAXONOMY_TEXT.strip().splitlines())
}
OPENERS = ["Hi,", "Hello team,", "Urgent:", "Hey support,", "", "Good morning,", "Hi there,"]
DETAILS = ["This started after Tuesday's update.", "We are on the Team plan.", "Three colleagues see the same."]
DETAILS += ["Please advise asap.", "Screenshot attached.", "We are in the EU region.", "Using Chrome on Windows."]


def labels(n: int) -> dict[str, str]:
    if not 2 <= n <= len(TAXONOMY):
        sys.exit(f"--labels must be from 2 to {len(TAXONOMY)}")
    names = [*list(TAXONOMY)[: n - 1], "other"]  # "other" always last
    return {name: TAXONOMY[name][0] for name in names}


def texts(rows: int, names: list[str]) -> list[str]:
    """Distinct, deterministic ticket texts; the account number makes every one of them distinct."""
    out = []
    for i in range(rows):
        sentence = TAXONOMY[names[i % len(names)]][1]
        opener, detail = OPENERS[(i // 7) % len(OPENERS)], DETAILS[(i // 3) % len(DETAILS)]
        if not opener.endswith(","):
            sentence = sentence[0].upper() + sentence[1:]
        stop = "" if sentence.endswith("?") else "."
        out.append(f"{opener} {sentence}{stop} {detail} Account #{40213 + 37 * i}.".strip())
    return out


def dump(path: Path, content: Any) -> None:
    """YAML files written as JSON, which YAML reads as it is."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(content, indent=2))


@dataclass
class Run:
    k: int
    rows: int
    answered: int
    requests: int
    retries: int
    rows_per_call: float
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    wall_s: float
    server: tuple[int, int, int]  # requests, prompt and completion tokens of its 200s, as the server counted

    @property
    def prompt_per_row(self) -> float:
        return self.prompt_tokens / self.rows

    @property
    def usd_per_1k(self) -> float:
        return self.cost_usd / self.rows * 1000


class Project:
    """A temp dbt project using this repo as a package; every run gets its own DuckDB file."""

    def __init__(self, root: Path, label_map: dict[str, str]) -> None:
        self.root = root
        self.dbt_bin = shutil.which("dbt", path=str(Path(sys.executable).parent)) or "dbt"
        self.env = {**os.environ, "BENCH_KEY": API_KEY, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"}
        self.env.pop("OPENAI_API_KEY", None)
        dump(root / "dbt_project.yml", {"name": "bench", "version": "1.0.0", "config-version": 2, "profile": "bench"})
        dump(root / "packages.yml", {"packages": [{"local": str(REPO)}]})
        sources = [{"name": "bench", "schema": "main", "tables": [{"name": "src"}]}]
        dump(root / "models" / "sources.yml", {"version": 2, "sources": sources})
        call = f"dbt_llm.llm_classify('body', {json.dumps(label_map)}, rows_per_request=var('k'))"
        sql = f"{{{{ config(materialized='table') }}}}\nselect id, {{{{ {call} }}}} as label\n"
        (root / "models" / "tickets.sql").write_text(sql + "from {{ source('bench', 'src') }}\n")
        self.use("deps", "http://127.0.0.1:9/v1")
        self.dbt("deps")

    def use(self, name: str, base_url: str) -> Path:
        """Point the profile at a fresh DuckDB file and at `base_url`; the file's path."""
        db = self.root / f"{name}.duckdb"
        config: dict[str, Any] = {"provider": "openai", "model": MODEL, "base_url": base_url}
        # on_error null: a row without an answer is a NULL in the table (counted below), not a failed run.
        config |= {"api_key_env": "BENCH_KEY", "prices": {MODEL: PRICE}, "on_error": "null"}
        plugins = [{"module": "dbt_llm.plugin", "config": config}]
        output = {"type": "duckdb", "path": str(db), "threads": 1, "plugins": plugins}
        dump(self.root / "profiles.yml", {"bench": {"target": "bench", "outputs": {"bench": output}}})
        return db

    def dbt(self, *args: str) -> float:
        """Run dbt as a child process; its wall time."""
        log = self.root / f"dbt_{args[0]}_{time.monotonic_ns()}.out"
        cmd = [self.dbt_bin, *args, "--project-dir", str(self.root), "--profiles-dir", str(self.root)]
        start = time.perf_counter()
        with log.open("w") as out:
            code = subprocess.run(cmd, cwd=self.root, env=self.env, stdout=out, stderr=subprocess.STDOUT).returncode
        if code != 0:
            sys.exit(f"dbt {' '.join(args)} failed ({code}):\n{log.read_text()[-4000:]}")
        return time.perf_counter() - start

    def run(self, k: int, bodies: list[str], fake: Any) -> Run:
        db = self.use(f"k{k}", str(fake.base_url))
        with duckdb.connect(str(db)) as con:
            con.execute("create table src (id integer, body varchar)")
            con.executemany("insert into src values (?, ?)", list(enumerate(bodies)))
        wall = self.dbt("run", "--select", "tickets", "--vars", json.dumps({"k": k}))
        with duckdb.connect(str(db), read_only=True) as con:
            audit = con.execute(
                """select sum(rows) as rows, sum(api_calls) as requests, sum(retries) as retries,
                          sum(rows_per_call * api_calls) / sum(api_calls) as rows_per_call,
                          sum(prompt_tokens) as prompt_tokens, sum(completion_tokens) as completion_tokens,
                          sum(cost_usd) as cost_usd
                   from dbt_llm.llm_audit where node_id = 'model.bench.tickets'"""
            )
            columns = [d[0] for d in audit.description]
            values = dict(zip(columns, audit.fetchone() or (), strict=True))
            answered = con.execute("select count(label) from tickets").fetchone()
        ok = [r for r in fake.requests if r.status == 200]
        served = (len(fake.requests), sum(r.prompt_tokens for r in ok), sum(r.completion_tokens for r in ok))
        return Run(k=k, answered=int(answered[0]) if answered else 0, wall_s=wall, server=served, **values)


def report(runs: list[Run], faults: bool) -> None:
    base = runs[0]
    cols = ["K", "rows", "answered", "requests", *(["retries"] if faults else []), "rows_per_call"]
    cols += ["prompt_tok/row", "compl_tok/row", "usd_per_1k", "wall_s", "prompt_x", "cost_x", "requests_x", "wall_x"]
    rows = []
    for r in runs:
        values = [str(r.k), str(r.rows), str(r.answered), str(r.requests), *([str(r.retries)] if faults else [])]
        values += [f"{r.rows_per_call:.2f}", f"{r.prompt_per_row:.1f}", f"{r.completion_tokens / r.rows:.1f}"]
        values += [f"{r.usd_per_1k:.5f}", f"{r.wall_s:.1f}", f"{r.prompt_per_row / base.prompt_per_row:.2f}"]
        values += [f"{r.usd_per_1k / base.usd_per_1k:.2f}", f"{r.requests / base.requests:.3f}"]
        values.append(f"{r.wall_s / base.wall_s:.2f}")
        rows.append(values)
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    for row in [cols, *rows]:
        print("  ".join(f"{v:>{w}}" for v, w in zip(row, widths, strict=True)))


def problems(runs: list[Run]) -> list[str]:
    found = []
    for r in runs:
        if r.answered != r.rows:
            found.append(f"K={r.k}: {r.rows - r.answered} of {r.rows} rows WITHOUT A LABEL")
        if (r.requests, r.prompt_tokens, r.completion_tokens) != r.server:
            audit = f"{r.requests} requests, {r.prompt_tokens}+{r.completion_tokens} tokens"
            found.append(f"K={r.k}: audit {audit} != server {r.server[0]} requests, {r.server[1]}+{r.server[2]} tokens")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--rows", type=int, default=None, help="distinct texts to classify (default 1000, quick 300)")
    parser.add_argument("--labels", type=int, default=30, help=f"labels, 2 to {len(TAXONOMY)} (default 30)")
    parser.add_argument("--ks", default="1,4,8,16", help="rows_per_request values, comma-separated (default 1,4,8,16)")
    parser.add_argument("--latency", type=float, default=0.02, help="fake server seconds per answer")
    parser.add_argument("--faults", action="store_true", help="fault rates invalid=0.05, 500=0.02; a retries column")
    parser.add_argument("--seed", type=int, default=7, help="seed of the fault draws (default 7)")
    parser.add_argument("--quick", action="store_true", help="300 rows")
    parser.add_argument("--keep", action="store_true", help="keep the temp project (logs, DuckDB files)")
    args = parser.parse_args(argv)
    rows = args.rows if args.rows is not None else (300 if args.quick else 1000)
    ks = sorted({1, *(int(k) for k in args.ks.split(","))})
    label_map = labels(args.labels)
    bodies = texts(rows, list(label_map))
    task = {"function": "classify", "labels": label_map}
    fixed = build_task(task, provider="openai", default_model=MODEL, temperature=0.0).messages("")[0]["content"]

    root = Path(tempfile.mkdtemp(prefix="dbt_llm_pack_bench_"))
    started = time.perf_counter()
    faults = f"; faults {FAULT_RATES} seed {args.seed}" if args.faults else ""
    print(f"project in {root}; {rows} rows, {len(label_map)} labels, latency {args.latency:g}s{faults}")
    print(f"fixed prompt (labels, descriptions) {len(fixed)} characters, ~{math.ceil(len(fixed) / 4)} tokens")
    print(f"e.g. {bodies[0]!r}", flush=True)
    runs: list[Run] = []
    try:
        project = Project(root, label_map)
        for k in ks:
            with FakeOpenAI(latency=args.latency, api_key=API_KEY) as fake:
                if args.faults:
                    fake.set_fault_rates(FAULT_RATES, seed=args.seed)
                run = project.run(k, bodies, fake)
            runs.append(run)
            print(f"[K={k}] {run.answered}/{run.rows} answered, {run.requests} requests, {run.wall_s:.1f}s", flush=True)
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    print()
    report(runs, args.faults)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    found = problems(runs)
    for problem in found:
        print(f"!!!!! FAILED: {problem}")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
