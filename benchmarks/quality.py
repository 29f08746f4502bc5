"""Answer quality of llm_classify / llm_extract on real, human-labelled text sets.

Run from the repo root::

    .venv/bin/python benchmarks/quality.py [--provider local|openai] [--model qwen2.5-0.5b]
        [--base-url URL --api-key-env VAR] [--sets banking77,snips,sp500,snips_slots]
        [--limit 60] [--concurrency N] [--descriptions] [--examples N] [--rows-per-request 1,4,8,16]

The rows go through dbt-llm's own engine (``build_task`` + ``Engine``), so what is measured is
what a dbt model gets: the same prompts, the JSON-schema-constrained answer, validation and
retries (``max_attempts`` 5, temperature 0, the plugin's defaults).  ``--provider local`` (the
default) starts the embedded llama.cpp server for ``--model`` (pulled with ``dbt-llm pull``) with
``--concurrency`` slots; ``--provider openai`` calls any OpenAI-compatible endpoint
(``--base-url``, default https://api.openai.com/v1; key from ``--api-key-env``, default
OPENAI_API_KEY; ``--model`` default gpt-4o-mini).

Sets (``../shared/datasets``, see its README for sources and licences):

- ``banking77``: bank support questions, 77 labels such as ``card_arrival``;
- ``snips``: voice-assistant requests, 7 intents;
- ``sp500``: a company's name -> its GICS sector, 11 labels;
- ``snips_slots``: extract SNIPS slots.  Rows are asked per intent, with fields = every slot
  name the dataset has for that intent (all ``string``); a slot absent from ``expected_json``
  is expected as null.

``--limit N`` rows per set: a deterministic stratified sample (strata = label, or intent for
``snips_slots``, taken in turn; rows and strata in sha256 order).  ``--examples N`` gives the
task N worked examples per set (per intent for ``snips_slots``) from rows outside the sample.
``--descriptions`` gives each label a description made from its name (``card_arrival`` ->
"card arrival", ``AddToPlaylist`` -> "Add To Playlist"; none when it would equal the name); the labels
themselves stay as they are.

``--rows-per-request K1,K2,...`` (default 1): each K is a run of every set, with the rows'
requests built with ``rows_per_request=K``, so the engine packs up to K texts of one task into a
request (the fixed prompt, labels and examples, is paid once per request; the answer is an object of
one answer per row, see ``dbt_llm/packing.py``).  Every K run has the same sample and the same tasks,
and its own fresh Engine (nothing carries over between runs: every run sends all of its requests);
the local server is started once and shared by the runs.  The table has one line per (set, K).

Columns:

- ``K``: rows per request of the run;
- ``rows``: rows scored;
- ``score``: accuracy (classification) or field exact match (extraction: each (row, field) pair,
  compared after case-folding and collapsing whitespace; null expected and null answered is right);
- ``floor``: what a constant answer scores: the majority label's share of the sample, or for
  extraction the field score of answering null everywhere;
- ``row_em`` / ``row_floor``: extraction only: rows with every field right, and that share when
  answering null everywhere;
- ``top``: share of the most frequent answer (for extraction, the whole answer object); near 1.0
  means the model says the same thing whatever the text;
- ``failed``: rows with no valid answer after the retries (unparsable, cut, timed out, ...),
  scored as wrong;
- ``requests``: requests sent (packs count once; retries and split packs included);
- ``rows/s``: rows answered per second of wall time (server start-up excluded);
- ``prompt/row``, ``compl/row``: prompt and completion tokens per row, retries included.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbt_llm.engine import Budget, Engine, Outcome, Request
from dbt_llm.packing import MAX_ROWS_PER_REQUEST
from dbt_llm.pricing import PriceTable
from dbt_llm.providers import OpenAIProvider, Provider
from dbt_llm.tasks import Task, build_task, cache_key

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SETS = {
    "banking77": "banking77_test_770.csv",
    "snips": "snips_intent_test.csv",
    "sp500": "sp500_company_sector.csv",
    "snips_slots": "snips_slots_extract.csv",
}
Row = dict[str, str]


def _h(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def stratified(rows: list[Row], stratum: str) -> list[Row]:
    """All rows, ordered so that every prefix is a stratified sample: one row of each stratum in turn."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for row in sorted(rows, key=lambda r: _h(r["id"])):
        groups[row[stratum]].append(row)
    queues = [groups[k] for k in sorted(groups, key=_h)]
    return [q[i] for i in range(max(map(len, queues))) for q in queues if i < len(q)]


def describe(label: str) -> str:
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", label).replace("_", " ")


def norm(value: Any) -> str | None:
    return None if value is None else " ".join(str(value).split()).casefold()


class Bench:
    def __init__(self, args: argparse.Namespace, engine: Engine, rows_per_request: int) -> None:
        self.args, self.engine, self.rows_per_request = args, engine, rows_per_request

    def task(self, spec: dict[str, Any]) -> Task:
        return build_task(spec, provider=self.args.provider, default_model=self.args.model, temperature=0.0)

    def ask(self, pairs: list[tuple[Task, str]]) -> tuple[list[Outcome], float]:
        """One outcome per (task, text); equal keys are sent once (the engine wants distinct keys).
        All in one `engine.run`, in sample order: packs form from requests submitted together."""
        budget = Budget(None)  # one for all, so rows of one task may share a pack
        keys = [cache_key(task.spec_hash, text) for task, text in pairs]
        k_rows = self.rows_per_request
        requests = {k: Request(k, task, text, budget, k_rows) for k, (task, text) in zip(keys, pairs, strict=True)}
        done = 0

        def progress(_outcome: Outcome) -> None:
            nonlocal done
            done += 1
            print(f"\r  {done}/{len(requests)}", end="", file=sys.stderr, flush=True)

        started = time.monotonic()
        outcomes = {o.key: o for o in self.engine.run(list(requests.values()), progress)}
        print(file=sys.stderr)
        return [outcomes[k] for k in keys], time.monotonic() - started

    def classify(self, rows: list[Row], sample: list[Row], rest: list[Row]) -> dict[str, Any]:
        labels = sorted({r["expected_label"] for r in rows})
        spec: dict[str, Any] = {"function": "classify", "labels": labels}
        if self.args.descriptions:
            spec["labels"] = {name: describe(name) if describe(name) != name else None for name in labels}
        if self.args.examples:
            spec["examples"] = [
                {"input": r["text"], "output": {"label": r["expected_label"]}} for r in rest[: self.args.examples]
            ]
        task = self.task(spec)
        outcomes, seconds = self.ask([(task, r["text"]) for r in sample])
        answers = [json.loads(o.result)["label"] if o.result else None for o in outcomes]
        right = sum(a == r["expected_label"] for a, r in zip(answers, sample, strict=True))
        majority = Counter(r["expected_label"] for r in sample).most_common(1)[0][1]
        return {
            "score": right / len(sample),
            "floor": majority / len(sample),
            **self.common(outcomes, [json.dumps(a) for a in answers if a is not None], seconds),
        }

    def extract(self, rows: list[Row], sample: list[Row], rest: list[Row]) -> dict[str, Any]:
        fields: dict[str, list[str]] = defaultdict(list)
        for row in rows:
            for name in json.loads(row["expected_json"]):
                if name not in fields[row["intent"]]:
                    fields[row["intent"]].append(name)
        tasks = {}
        for intent, names in fields.items():
            spec: dict[str, Any] = {"function": "extract", "fields": dict.fromkeys(names, "string")}
            if self.args.examples:
                shots = [r for r in rest if r["intent"] == intent][: self.args.examples]
                spec["examples"] = [
                    {"input": r["text"], "output": {n: json.loads(r["expected_json"]).get(n) for n in names}}
                    for r in shots
                ]
            tasks[intent] = self.task(spec)
        outcomes, seconds = self.ask([(tasks[r["intent"]], r["text"]) for r in sample])
        cells = cells_null = rows_right = rows_null = 0
        for row, outcome in zip(sample, outcomes, strict=True):
            expected = json.loads(row["expected_json"])
            answer = json.loads(outcome.result) if outcome.result else None
            names = fields[row["intent"]]
            right = sum(answer is not None and norm(answer.get(n)) == norm(expected.get(n)) for n in names)
            cells, cells_null = cells + right, cells_null + len(names) - len(expected)
            rows_right += right == len(names)
            rows_null += not expected
        n_cells = sum(len(fields[r["intent"]]) for r in sample)
        return {
            "score": cells / n_cells,
            "floor": cells_null / n_cells,
            "row_em": rows_right / len(sample),
            "row_floor": rows_null / len(sample),
            **self.common(outcomes, [o.result for o in outcomes if o.result], seconds),
        }

    @staticmethod
    def common(outcomes: list[Outcome], answers: list[str], seconds: float) -> dict[str, Any]:
        n = len(outcomes)
        return {
            "rows": n,
            "top": Counter(answers).most_common(1)[0][1] / n if answers else 0.0,
            "failed": sum(o.error_kind is not None for o in outcomes),
            "requests": sum(o.requests for o in outcomes),
            "rows/s": n / seconds,
            "prompt/row": sum(o.usage.prompt_tokens for o in outcomes) / n,
            "compl/row": sum(o.usage.completion_tokens for o in outcomes) / n,
            "cost": sum(o.cost_usd or 0.0 for o in outcomes),
        }

    def run(self, name: str) -> dict[str, Any]:
        with open(DATASETS / SETS[name], newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        extract = name == "snips_slots"
        ordered = stratified(rows, "intent" if extract else "expected_label")
        sample, rest = ordered[: self.args.limit], ordered[self.args.limit :]
        print(f"{name}, K={self.rows_per_request}: {len(sample)} rows", file=sys.stderr)
        return (self.extract if extract else self.classify)(rows, sample, rest)


def provider_factory(args: argparse.Namespace) -> Callable[[], Provider]:
    if args.provider == "openai":
        if not os.environ.get(args.api_key_env):
            sys.exit(f"set {args.api_key_env} to the API key of {args.base_url}")
        return lambda: OpenAIProvider(
            base_url=args.base_url,
            api_key=lambda: os.environ[args.api_key_env],
            timeout=args.timeout,
            max_connections=args.concurrency,
        )
    # As the plugin's local provider (runtime._local_provider): one slot per concurrent request.
    from dbt_llm.local.server import shared_server

    started = time.monotonic()
    server = shared_server(args.model, n_parallel=args.concurrency)
    print(f"local server for {args.model} up in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return lambda: OpenAIProvider(
        base_url=server.base_url,
        api_key=lambda: server.api_key,
        timeout=args.timeout,
        max_connections=args.concurrency,
        trust_env=False,
    )


def table(results: dict[tuple[str, int], dict[str, Any]]) -> str:
    """One line per (set, K), in the order given."""
    cols = ["rows", "score", "floor", "row_em", "row_floor", "top", "failed", "requests"]
    cols += ["rows/s", "prompt/row", "compl/row"]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.2f}" if value < 10 else f"{value:.0f}"

    lines = [["set", "K", *cols]]
    lines += [[name, str(k), *(cell(r.get(c)) for c in cols)] for (name, k), r in results.items()]
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols) + 2)]
    return "\n".join(
        "  ".join(v.ljust(w) if i == 0 else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths, strict=True)))
        for line in lines
    )


def k_list(value: str) -> list[int]:
    """`--rows-per-request`: distinct whole numbers from 1 to MAX_ROWS_PER_REQUEST, in the order given."""
    try:
        ks = [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma list of whole numbers: {value!r}") from None
    if not ks or any(not 1 <= k <= MAX_ROWS_PER_REQUEST for k in ks):
        raise argparse.ArgumentTypeError(f"each K must be from 1 to {MAX_ROWS_PER_REQUEST}; got {value!r}")
    return list(dict.fromkeys(ks))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--provider", choices=["local", "openai"], default="local")
    p.add_argument("--model", help="default: qwen2.5-0.5b (local), gpt-4o-mini (openai)")
    p.add_argument("--base-url", default="https://api.openai.com/v1")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--limit", type=int, default=60, help="rows per set")
    p.add_argument("--concurrency", type=int, help="requests at once (local: server slots); default 2 local, 8 openai")
    p.add_argument("--descriptions", action="store_true", help="describe each label by its name, humanised")
    p.add_argument("--examples", type=int, default=0, help="worked examples per set, from rows outside the sample")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument(
        "--rows-per-request",
        type=k_list,
        default=[1],
        metavar="K1,K2,...",
        help="rows packed per request; one run of every set per K (default: 1)",
    )
    args = p.parse_args()
    local = args.provider == "local"
    args.model = args.model or ("qwen2.5-0.5b" if local else "gpt-4o-mini")
    args.concurrency = args.concurrency or (2 if local else 8)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        sys.exit(f"unknown set(s) {unknown}; choose from {', '.join(SETS)}")

    factory = provider_factory(args)  # the local server starts here, once for every K
    results: dict[tuple[str, int], dict[str, Any]] = {}
    seconds: dict[int, float] = {}
    for k in args.rows_per_request:
        # A fresh engine per K: no in-flight request, limiter or calibration carries over from another run.
        engine = Engine(
            factory,
            prices=PriceTable(free=local),
            max_concurrency=args.concurrency,
            max_attempts=5,
            request_timeout=args.timeout,
        )
        started = time.monotonic()
        try:
            for name in names:
                results[name, k] = Bench(args, engine, k).run(name)
        finally:
            engine.close()
        seconds[k] = time.monotonic() - started
    ordered = {(name, k): results[name, k] for name in names for k in args.rows_per_request}
    cost = sum(r["cost"] for r in results.values())
    runs = ", ".join(f"K={k} {s:.0f} s" for k, s in seconds.items())
    print(
        f"{args.provider} {args.model}: limit {args.limit}, examples {args.examples}, "
        f"descriptions {'on' if args.descriptions else 'off'}, concurrency {args.concurrency}; "
        f"{runs}" + ("" if local else f", ${cost:.4f} (models with a known price)")
    )
    print(table(ordered))


if __name__ == "__main__":
    main()
