"""How close the token estimate (``Task.estimate_tokens``: the limiter's and the budget's reservations,
the dry run) is to the tokens a provider bills, on real texts.

Run from the repo root::

    .venv/bin/python benchmarks/estimate_bench.py [--provider fake|local] [--model smollm2-135m] [--limit 40]

``--provider fake`` (the default) asks the test server ``tests/openai_server.py``, which bills
``ceil(characters / 4)`` of the messages and of the answer; ``--provider local`` asks the embedded
llama.cpp server (``dbt-llm pull`` the model first), whose usage is its real tokenizer's count,
chat template included.  The sets are those of ``benchmarks/quality.py`` (``../shared/datasets``):
three classifications and the SNIPS slot extraction, ``--limit`` rows each.

Columns, per set: ``rows`` answered at the first attempt (the only ones compared); ``prompt`` and
``compl``: the sum of the estimates over the sum of the billed tokens, then the per-row ratios'
range (min-max); ``est/row`` and ``billed/row``: mean prompt + completion tokens per row.
``--dump FILE`` writes each compared row (spec, text, usage, answer) as JSON, to try other estimates on.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from quality import DATASETS, SETS, stratified

from dbt_llm.engine import Budget, Engine, EngineSettings, Request
from dbt_llm.functions.tasks import Task, build_task, cache_key
from dbt_llm.pricing import PriceTable
from dbt_llm.providers import OpenAIProvider, Provider


def tasks_for(name: str, rows: list[dict[str, str]], model: str) -> list[tuple[Task, str]]:
    """(task, text) per row, built as quality.py builds them."""

    def task(spec: dict[str, Any]) -> Task:
        return build_task(spec, provider="openai", default_model=model, temperature=0.0)

    if name != "snips_slots":
        labeled = task({"function": "classify", "labels": sorted({r["expected_label"] for r in rows})})
        return [(labeled, r["text"]) for r in stratified(rows, "expected_label")]
    fields: dict[str, list[str]] = {}
    for row in rows:
        names = fields.setdefault(row["intent"], [])
        names.extend(n for n in json.loads(row["expected_json"]) if n not in names)
    by_intent = {i: task({"function": "extract", "fields": dict.fromkeys(n, "string")}) for i, n in fields.items()}
    return [(by_intent[r["intent"]], r["text"]) for r in stratified(rows, "intent")]


def measure(engine: Engine, pairs: list[tuple[Task, str]], dump: list[dict[str, Any]]) -> dict[str, Any]:
    budget = Budget(None)
    requests = {cache_key(t.spec_hash, text): (t, text) for t, text in pairs}
    outcomes = engine.run([Request(k, t, text, budget) for k, (t, text) in requests.items()], lambda _o: None)
    est_p = est_c = got_p = got_c = 0
    prompt_ratios: list[float] = []
    compl_ratios: list[float] = []
    for outcome in outcomes:
        if not outcome.ok or outcome.attempts != 1:
            continue
        task, text = requests[outcome.key]
        p, c = task.estimate_tokens(text)
        est_p, est_c = est_p + p, est_c + c
        got_p, got_c = got_p + outcome.usage.prompt_tokens, got_c + outcome.usage.completion_tokens
        usage = [outcome.usage.prompt_tokens, outcome.usage.completion_tokens]
        dump.append({"spec": task.spec, "text": text, "usage": usage, "result": outcome.result})
        prompt_ratios.append(p / max(1, outcome.usage.prompt_tokens))
        compl_ratios.append(c / max(1, outcome.usage.completion_tokens))
    n = len(prompt_ratios)
    return {
        "rows": n,
        "prompt": f"{est_p / got_p:.2f} ({min(prompt_ratios):.2f}-{max(prompt_ratios):.2f})",
        "compl": f"{est_c / got_c:.2f} ({min(compl_ratios):.2f}-{max(compl_ratios):.2f})",
        "est/row": f"{(est_p + est_c) / n:.0f}",
        "billed/row": f"{(got_p + got_c) / n:.0f}",
    }


def provider(args: argparse.Namespace) -> tuple[Callable[[], Provider], Callable[[], None]]:
    if args.provider == "fake":
        from openai_server import FakeOpenAI

        fake = FakeOpenAI().start()
        factory = lambda: OpenAIProvider(  # noqa: E731
            base_url=fake.base_url, api_key=lambda: "x", timeout=30, max_connections=8, trust_env=False
        )
        return factory, fake.stop
    from dbt_llm.local.server import Slots, shared_server

    server = shared_server(args.model, Slots(n_parallel=2))
    factory = lambda: OpenAIProvider(  # noqa: E731
        base_url=server.base_url, api_key=lambda: server.api_key, timeout=120, max_connections=2, trust_env=False
    )
    return factory, lambda: None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--provider", choices=["fake", "local"], default="fake")
    p.add_argument("--model", default="smollm2-135m", help="local model (default smollm2-135m)")
    p.add_argument("--limit", type=int, default=40, help="rows per set")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--dump", help="write each compared row (spec, text, usage, answer) to this JSON file")
    args = p.parse_args()
    factory, stop = provider(args)
    engine = Engine(
        factory,
        prices=PriceTable(free=True),
        settings=EngineSettings(
            max_concurrency=8 if args.provider == "fake" else 2, max_attempts=3, request_timeout=120
        ),
    )
    results: dict[str, dict[str, Any]] = {}
    dump: list[dict[str, Any]] = []
    try:
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            with open(DATASETS / SETS[name], newline="", encoding="utf-8") as f:
                rows = list(csv.DictReader(f))
            results[name] = measure(engine, tasks_for(name, rows, args.model)[: args.limit], dump)
    finally:
        engine.close()
        stop()
    if args.dump:
        Path(args.dump).write_text(json.dumps(dump))
    cols = ["rows", "prompt", "compl", "est/row", "billed/row"]
    lines = [["set", *cols]] + [[name, *(str(r[c]) for c in cols)] for name, r in results.items()]
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols) + 1)]
    print(f"{args.provider}{'' if args.provider == 'fake' else ' ' + args.model}: estimate / billed tokens")
    for line in lines:
        print("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)))


if __name__ == "__main__":
    main()
