"""Cascades (escalate_to=): the accuracy and cost of a small model alone, a large one alone, and the
cascade at several thresholds and at escalate_below='auto', on the shared labelled intent sets.

Run from the repo root (the models pulled with `dbt-llm pull NAME`)::

    .venv/bin/python benchmarks/cascade_bench.py [--small qwen2.5-coder-0.5b] [--large qwen2.5-coder-1.5b]
        [--sets snips,banking77] [--limit 140] [--golden 70] [--thresholds 0.5,0.7,0.8,0.9,0.95,0.99]
        [--target 0.95] [--price-as gpt-4o-mini,gpt-4o] [--answers PATH]
    .venv/bin/python benchmarks/cascade_bench.py --provider openai --base-url URL --small M1 --large M2

How: each set is ordered as a stratified sample (benchmarks/quality.py: strata = label, in turn, in
sha256 order); its first `--golden` rows are the golden set, the next `--limit` rows the test sample.
Both models answer every row (golden and sample) with dbt-llm's own task and engine, exactly the
request a dbt model's llm_classify sends with `model=` (logprobs on, temperature 0), so each row has
the small model's answer and confidence and the large model's answer. A cascade's answers are then
what its SQL gives, since it reads the very same cache entries: the small model's answer where its
confidence is at least the threshold, else the large model's. `auto` is the threshold
dbt_llm.calls.cascade.choose_threshold picks on the golden set (the lowest at which the cascade agrees
with the large model on `--target` of the golden inputs), then applied to the sample it never saw.

Columns (one line per set and run):

- ``acc``: accuracy on the sample; ``Δlarge``: acc minus the large model's;
- ``escal``: share of the sample's rows asked of the large model;
- ``tok small``, ``tok large``: prompt + completion tokens per sample row sent to each model (the
  small model is asked every row; the large model only the escalated ones);
- ``USD/1k``: those tokens priced, per 1,000 rows, with the two models of `--price-as` (default:
  the small model as gpt-4o-mini, the large as gpt-4o, from dbt-llm's built-in price table): the
  price ratio of a typical API pair, since local models cost nothing per token;
- ``CPU s``: local models only, CPU seconds of this process (which runs the llama.cpp servers) to
  answer the sample: all of the small model's, and the large model's in proportion to the tokens of
  the escalated rows (each model's CPU time is measured while it alone answers).
The golden set costs the large model one answer per golden input once (cached after), shown apart.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from quality import DATASETS, SETS, Row, stratified

from dbt_llm.calls.cascade import choose_threshold
from dbt_llm.engine import Budget, Engine, EngineSettings, Outcome, Request
from dbt_llm.functions.tasks import build_task, cache_key
from dbt_llm.pricing import BUILTIN_PRICES, Price, PriceTable
from dbt_llm.providers import OpenAIProvider, Provider

INTENT_SETS = ("snips", "banking77")


@dataclass
class Answers:
    """One model's answers of rows: label, confidence, tokens, and the CPU seconds they took."""

    labels: list[str | None]
    confidences: list[float | None]
    tokens: list[tuple[int, int]]  # (prompt, completion) per row
    cpu: float
    wall: float


def ask(engine: Engine, provider: str, model: str, labels: list[str], texts: list[str]) -> Answers:
    """Every text asked of `model` as llm_classify(text, labels, model=model) asks it."""
    task = build_task(
        {"function": "classify", "labels": labels, "model": model},
        provider=provider,
        default_model=model,
        temperature=0.0,
    )
    budget = Budget(None)
    keys = [cache_key(task.spec_hash, t) for t in texts]
    distinct = {k: Request(k, task, t, budget, 1) for k, t in zip(keys, texts, strict=True)}
    done = 0

    def progress(_o: Outcome) -> None:
        nonlocal done
        done += 1
        print(f"\r  {model}: {done}/{len(distinct)}", end="", file=sys.stderr, flush=True)

    cpu, wall = time.process_time(), time.monotonic()
    outcomes = {o.key: o for o in engine.run(list(distinct.values()), progress)}
    cpu, wall = time.process_time() - cpu, time.monotonic() - wall
    print(file=sys.stderr)
    rows = [outcomes[k] for k in keys]
    return Answers(
        [json.loads(o.result)["label"] if o.result else None for o in rows],
        [o.confidence for o in rows],
        [(o.usage.prompt_tokens, o.usage.completion_tokens) for o in rows],
        cpu,
        wall,
    )


def cascade(small: Answers, large: Answers, threshold: float) -> tuple[list[str | None], list[bool]]:
    """The cascade's answers and which rows it escalated: below the threshold, or of unknown confidence."""
    up = [c is None or c < threshold for c in small.confidences]
    return [lg if u else sm for sm, lg, u in zip(small.labels, large.labels, up, strict=True)], up


def line(name: str, run: str, answers: list[str | None], up: list[bool], ctx: dict[str, Any]) -> dict[str, Any]:
    expected, small, large, prices = ctx["expected"], ctx["small"], ctx["large"], ctx["prices"]
    n = len(expected)
    acc = sum(a == e for a, e in zip(answers, expected, strict=True)) / n
    asked_small = [run != "large alone"] * n
    usd = (_usd(small.tokens, asked_small, prices[0]) + _usd(large.tokens, up, prices[1])) / n * 1000
    tok_small, tok_large = _tokens(small.tokens, asked_small), _tokens(large.tokens, up)
    cpu = None
    if ctx["local"]:
        share = tok_large / _tokens(large.tokens, [True] * n) if any(up) else 0.0
        cpu = (small.cpu if tok_small else 0.0) + large.cpu * share
    return {
        "set": name,
        "run": run,
        "acc": acc,
        "Δlarge": acc - ctx["large_acc"],
        "escal": sum(up) / n,
        "tok small": tok_small / n,
        "tok large": tok_large / n,
        "USD/1k": usd,
        "CPU s": cpu,
    }


def _tokens(tokens: list[tuple[int, int]], asked: list[bool]) -> int:
    return sum(p + c for (p, c), a in zip(tokens, asked, strict=True) if a)


def _usd(tokens: list[tuple[int, int]], asked: list[bool], price: Price) -> float:
    return sum(price.cost(p, c) for (p, c), a in zip(tokens, asked, strict=True) if a)


def _part(answers: Answers, start: int) -> Answers:
    """The rows from `start` on, with the CPU seconds of their share of the tokens."""
    total = _tokens(answers.tokens, [True] * len(answers.tokens))
    part = answers.tokens[start:]
    share = _tokens(part, [True] * len(part)) / total if total else 0.0
    return Answers(answers.labels[start:], answers.confidences[start:], part, answers.cpu * share, answers.wall)


def bench_set(name: str, args: argparse.Namespace, engine: Engine, out: list[dict[str, Any]]) -> dict[str, Any]:
    with open(Path(args.datasets) / SETS[name], newline="", encoding="utf-8") as f:
        rows: list[Row] = list(csv.DictReader(f))
    ordered = stratified(rows, "expected_label")
    golden, sample = ordered[: args.golden], ordered[args.golden : args.golden + args.limit]
    labels = sorted({r["expected_label"] for r in rows})
    print(f"{name}: {len(golden)} golden rows, {len(sample)} sample rows, {len(labels)} labels", file=sys.stderr)
    texts = [r["text"] for r in golden + sample]
    small = ask(engine, args.provider, args.small, labels, texts)
    large = ask(engine, args.provider, args.large, labels, texts)
    g = len(golden)
    pairs = list(zip(small.labels[:g], small.confidences[:g], large.labels[:g], strict=True))
    choice = choose_threshold(pairs, args.target)
    s, lg = _part(small, g), _part(large, g)
    expected = [r["expected_label"] for r in sample]
    large_acc = sum(a == e for a, e in zip(lg.labels, expected, strict=True)) / len(sample)
    ctx = {
        "expected": expected,
        "small": s,
        "large": lg,
        "prices": args.prices,
        "local": args.provider == "local",
        "large_acc": large_acc,
    }
    n = len(sample)
    lines = [
        line(name, "small alone", s.labels, [False] * n, ctx),
        line(name, "large alone", lg.labels, [True] * n, ctx),
    ]
    for t in args.thresholds:
        lines.append(line(name, f"cascade <{t:g}", *cascade(s, lg, t), ctx))
    lines.append(line(name, f"auto <{choice.threshold:.3g}", *cascade(s, lg, choice.threshold), ctx))
    out.extend(
        {"set": name, "id": r["id"], "expected": r["expected_label"], "small": a, "confidence": c, "large": b}
        for r, a, c, b in zip(golden + sample, small.labels, small.confidences, large.labels, strict=True)
    )
    auto = lines[-1]
    reached = "reached" if choice.reached else "NOT reached"
    per_golden = _tokens(large.tokens[:g], [True] * g) / g
    done = "yes" if auto["Δlarge"] >= -0.05 and auto["escal"] <= 0.60 else "no"
    return {
        "lines": lines,
        "golden": f"{name}: auto chose {choice.threshold:.3g} on {choice.inputs} golden inputs (agreement with the "
        f"large model {choice.agreement or 0:.3f}, target {args.target}, {reached}; {choice.escalated} escalated); "
        f"the large model answers each golden input once ({per_golden:.0f} tokens). Done when (within 0.05 of "
        f"large, at most 60% escalated): {done} (Δ {auto['Δlarge']:+.3f}, {auto['escal']:.0%} escalated)",
        "seconds": f"{name}: {args.small} {small.wall:.0f} s wall {small.cpu:.0f} s CPU, "
        f"{args.large} {large.wall:.0f} s wall {large.cpu:.0f} s CPU ({len(texts)} rows each)",
    }


def table(lines: list[dict[str, Any]]) -> str:
    cols = list(lines[0])

    def cell(v: Any) -> str:
        if v is None:
            return "-"
        return (
            f"{v:+.3f}"
            if isinstance(v, float) and v <= 0 and v != 0
            else f"{v:.3f}"
            if isinstance(v, float)
            else str(v)
        )

    head = "| " + " | ".join(cols) + " |\n|" + "|".join("---" for _ in cols) + "|\n"
    return head + "\n".join("| " + " | ".join(cell(r[c]) for c in cols) + " |" for r in lines)


def provider_factory(args: argparse.Namespace) -> Any:
    if args.provider == "openai":
        if not os.environ.get(args.api_key_env):
            sys.exit(f"set {args.api_key_env} to the API key of {args.base_url}")
        return lambda: OpenAIProvider(
            base_url=args.base_url,
            api_key=lambda: os.environ[args.api_key_env],
            timeout=args.timeout,
            max_connections=args.concurrency,
        )
    # The plugin's own embedded provider: one llama.cpp server per model, started on its first request.
    from dbt_llm.local.server import Slots
    from dbt_llm.providers.local import LocalProvider

    slots = Slots(n_parallel=args.concurrency)

    def make() -> Provider:
        return LocalProvider(slots, args.timeout)

    return make


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--provider", choices=["local", "openai"], default="local")
    p.add_argument("--small", default="qwen2.5-coder-0.5b")
    p.add_argument("--large", default="qwen2.5-coder-1.5b")
    p.add_argument("--base-url", default="https://api.openai.com/v1")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--sets", default=",".join(INTENT_SETS))
    p.add_argument("--datasets", default=str(DATASETS))
    p.add_argument("--limit", type=int, default=140, help="sample rows per set")
    p.add_argument("--golden", type=int, default=70, help="golden rows per set (before the sample, disjoint)")
    p.add_argument("--thresholds", default="0.5,0.7,0.8,0.9,0.95,0.99")
    p.add_argument("--target", type=float, default=0.95, help="cascade_target of auto")
    p.add_argument("--price-as", default="gpt-4o-mini,gpt-4o", help="built-in prices of the small and large model")
    p.add_argument("--concurrency", type=int, default=2, help="requests at once (local: slots per model)")
    p.add_argument("--timeout", type=float, default=300.0)
    p.add_argument("--answers", metavar="PATH", help="write every row's answers as JSON lines")
    args = p.parse_args()
    args.thresholds = [float(t) for t in args.thresholds.split(",") if t]
    as_small, as_large = args.price_as.split(",")
    args.prices = (BUILTIN_PRICES[as_small], BUILTIN_PRICES[as_large])
    engine = Engine(
        provider_factory(args),
        prices=PriceTable(free=args.provider == "local"),
        settings=EngineSettings(max_concurrency=args.concurrency, max_attempts=5, request_timeout=args.timeout),
    )
    lines: list[dict[str, Any]] = []
    notes: list[str] = []
    answers: list[dict[str, Any]] = []
    try:
        for name in [s.strip() for s in args.sets.split(",") if s.strip()]:
            result = bench_set(name, args, engine, answers)
            lines += result["lines"]
            notes += [result["golden"], result["seconds"]]
    finally:
        engine.close()
    print(
        f"{args.provider}: {args.small} -> {args.large}, {args.golden} golden + {args.limit} sample rows per set, "
        f"priced as {as_small} -> {as_large} (USD per 1M input/output: {args.prices[0].input}/"
        f"{args.prices[0].output} and {args.prices[1].input}/{args.prices[1].output})"
    )
    print(table(lines))
    print("\n".join(notes))
    if args.answers:
        with open(args.answers, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(a, ensure_ascii=False) + "\n" for a in answers)


if __name__ == "__main__":
    main()
