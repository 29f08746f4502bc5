"""Answer quality of llm_classify / llm_extract on real, human-labelled text sets.

Run from the repo root::

    .venv/bin/python benchmarks/quality.py [--provider local|openai] [--model qwen2.5-coder-1.5b]
        [--base-url URL --api-key-env VAR] [--sets banking77,snips,sp500,snips_slots,snips_slots_dense,us_addresses]
        [--limit 60] [--concurrency N] [--descriptions] [--examples N] [--rows-per-request 1,4,8,16]
        [--baseline naive] [--per-field] [--answers PATH] [--candidate-spans N]

The rows go through dbt-llm's own engine (``build_task`` + ``Engine``), so what is measured is
what a dbt model gets: the same prompts, the JSON-schema-constrained answer, validation and
retries (``max_attempts`` 5, temperature 0, the plugin's defaults), and for extraction the grounding
a dbt model applies (``Task.ground``: a string value the text does not contain becomes null).  ``--provider local`` (the
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
  is expected as null.  Most fields are absent (about 0.8 of the cells are null);
- ``snips_slots_dense``: the same rows where most fields are present: fields = an intent's 3 most
  common slots (SearchCreativeWork, with 2 slots, is left out), rows = those stating at least 2 of
  them (316 rows, 0.74 of the cells stated);
- ``us_addresses``: 48 vendor addresses written for this project (``benchmarks/data``, CC0; invoice
  lines, signatures, sentences), fields company, street, city, state, postal_code, 0.95 of the
  cells stated, every value an exact span of its text.

``--limit N`` rows per set: a deterministic stratified sample (strata = label, or intent for
``snips_slots``, taken in turn; rows and strata in sha256 order).  ``--examples N`` gives the
task N worked examples per set (per intent for ``snips_slots``) from rows outside the sample.
``--descriptions`` gives each label a description made from its name (``card_arrival`` ->
"card arrival", ``AddToPlaylist`` -> "Add To Playlist"; none when it would equal the name); the labels
themselves stay as they are.

``--baseline naive`` also runs a naive one-line prompt on the same sample, model, answer schema (the
same json_schema constraint), max_tokens, validation and grounding, one row per request, so the table
shows what dbt-llm's templates add: for classification a single user message "Classify the text into
one of these labels: a, b, c.\nText: ...", for extraction "Extract the fields a, b from the text. Use
null when absent.\nText: ..." (no system message; ``--descriptions`` and ``--examples`` are not shown
to it).  ``--per-field`` adds, for extraction, a table per field name of each run's right cells and
its wrong ones by kind.  ``--candidate-spans N`` (a prototype, not in the product: measured and
rejected, README "Answer quality") constrains each free-text string field of dbt-llm's extraction
requests to an ``enum`` of the text's candidate spans (every run of whole words, ends stripped of
punctuation) plus null, for texts of at most N words, so every value is grounded by construction;
the naive baseline and packed requests (K > 1) keep the plain schema.  ``--answers PATH`` writes every
row's text, expected and given answer (JSON lines).

``--rows-per-request K1,K2,...`` (default 1): each K is a run of every set, with the rows'
requests built with ``rows_per_request=K``, so the engine packs up to K texts of one task into a
request (the fixed prompt, labels and examples, is paid once per request; the answer is an object of
one answer per row, see ``dbt_llm/engine/packing.py``).  Every K run has the same sample and the same tasks,
and its own fresh Engine (nothing carries over between runs: every run sends all of its requests);
the local server is started once and shared by the runs.  The table has one line per (set, K).

Columns:

- ``K``: rows per request of the run;
- ``prompt``: ``dbt-llm`` (the plugin's templates) or the ``--baseline``;
- ``rows``: rows scored;
- ``score``: accuracy (classification) or field exact match (extraction: each (row, field) pair,
  compared after case-folding and collapsing whitespace, after grounding; null expected and null
  answered is right);
- ``floor``: what a constant answer scores: the majority label's share of the sample, or for
  extraction the field score of answering null everywhere;
- ``row_em`` / ``row_floor``: extraction only: rows with every field right, and that share when
  answering null everywhere;
- ``raw_score`` / ``raw_row_em``: extraction only: ``score`` and ``row_em`` of the answers before
  grounding (what the model said);
- ``top``: share of the most frequent answer (for extraction, the whole answer object); near 1.0
  means the model says the same thing whatever the text;
- ``failed``: rows with no valid answer after the retries (unparsable, cut, timed out, ...),
  scored as wrong;
- ``requests``: requests sent (packs count once; retries and split packs included);
- ``rows/s``: rows answered per second of wall time (server start-up excluded);
- ``prompt/row``, ``compl/row``: prompt and completion tokens per row, retries included;
- ``conf``, ``hi_half``, ``lo_half`` (classification): the mean confidence of the answers (what
  ``with_confidence=true`` returns: the probability the model gave its label among the labels, from
  the token logprobs, ``dbt_llm/functions/confidence.py``), and the accuracy of the more confident and
  the less confident half of the rows that have one (sorted by confidence, ties in sha256 order of the
  row id; an odd row out in the middle is left out); ``conf_rows``: rows with a confidence (a failed
  row, or a provider that gives no logprobs, has none).  A confidence that separates right from wrong
  answers has ``hi_half`` well above ``lo_half``.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
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

from dbt_llm.engine import Budget, Engine, EngineSettings, Outcome, Request
from dbt_llm.engine.packing import MAX_ROWS_PER_REQUEST
from dbt_llm.functions.prompts import Message
from dbt_llm.functions.tasks import Task, build_task, cache_key, sha256_hex
from dbt_llm.local.registry import DEFAULT_MODEL as LOCAL_DEFAULT_MODEL
from dbt_llm.pricing import PriceTable
from dbt_llm.providers import OpenAIProvider, Provider

DATASETS = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"
SETS = {
    "banking77": "banking77_test_770.csv",
    "snips": "snips_intent_test.csv",
    "sp500": "sp500_company_sector.csv",
    "snips_slots": "snips_slots_extract.csv",
    "snips_slots_dense": "snips_slots_extract.csv",
    "us_addresses": "us_vendor_addresses.csv",
}
EXTRACT_SETS = {"snips_slots", "snips_slots_dense", "us_addresses"}
OWN_DATA = Path(__file__).resolve().parent / "data"  # sets written for this project (us_addresses)
DENSE_FIELDS = 3  # snips_slots_dense: an intent's most common slots ...
DENSE_STATED = 2  # ... of which a row states at least this many
ADDRESS_FIELDS = ["company", "street", "city", "state", "postal_code"]
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


def naive_messages(task: Task, text: str) -> list[Message]:
    """The one-line prompt dbt-llm's templates are measured against: a single user message, no system."""
    if task.function == "classify":
        return [
            {
                "role": "user",
                "content": f"Classify the text into one of these labels: {', '.join(task.labels)}.\nText: {text}",
            }
        ]
    names = ", ".join(task.schema["properties"])
    return [
        {"role": "user", "content": f"Extract the fields {names} from the text. Use null when absent.\nText: {text}"}
    ]


class NaiveTask(Task):
    """`task` with the naive prompt: the same model, answer schema (the json_schema constraint), max_tokens,
    temperature and validation; only the messages differ (and the spec hash, so keys never collide)."""

    def messages(self, text: str) -> list[Message]:
        return naive_messages(self, text)

    def packed_messages(self, texts: dict[str, str]) -> list[Message]:
        raise NotImplementedError("the naive baseline is sent one row per request")

    @classmethod
    def of(cls, task: Task) -> NaiveTask:
        values = {f.name: getattr(task, f.name) for f in dataclasses.fields(task)}
        values["spec_hash"] = sha256_hex(task.spec_json + "\nnaive")
        return cls(**values)


def exempt(task: Task) -> Task:
    """`task` with every field exempt from grounding (`grounded: false` is never sent, so the requests are
    the same): the engine hands back the model's raw answer, which the bench grounds itself."""
    properties = {name: {**sub, "grounded": False} for name, sub in task.schema["properties"].items()}
    return dataclasses.replace(task, schema={**task.schema, "properties": properties})


_SPAN_ENDS = ' \t\n.,!?;:"()[]{}'


def candidate_spans(text: str, max_words: int) -> list[str] | None:
    """Every run of whole words of `text`, ends stripped of punctuation, each once; None past `max_words`."""
    words = text.split()
    if not words or len(words) > max_words:
        return None
    spans = (" ".join(words[i:j]).strip(_SPAN_ENDS) for i in range(len(words)) for j in range(i + 1, len(words) + 1))
    return list(dict.fromkeys(s for s in spans if s))


def span_schema(schema: dict[str, Any], spans: list[str]) -> dict[str, Any]:
    """`schema` (an extraction's wire schema) with each free-text string field an enum of `spans` or null."""
    properties = {
        name: {**sub, "enum": [*spans, None]}
        if sub.get("type") == ["string", "null"] and "enum" not in sub and "format" not in sub
        else sub
        for name, sub in schema["properties"].items()
    }
    return {**schema, "properties": properties}


@dataclasses.dataclass(frozen=True)
class SpanRequest(Request):
    """A Request whose answer schema holds the candidate spans of its text (--candidate-spans)."""

    max_words: int = 0

    def response_format(self) -> dict[str, Any] | None:
        asked = super().response_format()
        spans = candidate_spans(self.text, self.max_words)
        if asked is None or spans is None:
            return asked
        inner = asked["json_schema"]
        return {**asked, "json_schema": {**inner, "schema": span_schema(inner["schema"], spans)}}


class Bench:
    def __init__(
        self, args: argparse.Namespace, engine: Engine, rows_per_request: int, prompt: str = "dbt-llm"
    ) -> None:
        self.args, self.engine, self.rows_per_request, self.prompt = args, engine, rows_per_request, prompt
        self.answers: list[dict[str, Any]] = []  # one per row, for --answers

    def task(self, spec: dict[str, Any]) -> Task:
        task = build_task(spec, provider=self.args.provider, default_model=self.args.model, temperature=0.0)
        return NaiveTask.of(task) if self.prompt == "naive" else task

    def ask(self, pairs: list[tuple[Task, str]]) -> tuple[list[Outcome], float]:
        """One outcome per (task, text); equal keys are sent once (the engine wants distinct keys).
        All in one `engine.run`, in sample order: packs form from requests submitted together."""
        budget = Budget(None)  # one for all, so rows of one task may share a pack
        keys = [cache_key(task.spec_hash, text) for task, text in pairs]
        k_rows = self.rows_per_request
        spans = self.args.candidate_spans if self.prompt == "dbt-llm" else 0
        requests = {
            k: SpanRequest(k, task, text, budget, k_rows, spans)
            if spans and task.function == "extract"
            else Request(k, task, text, budget, k_rows)
            for k, (task, text) in zip(keys, pairs, strict=True)
        }
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
        self.answers += [
            {"id": r["id"], "text": r["text"], "expected": r["expected_label"], "answer": a, "confidence": o.confidence}
            for r, a, o in zip(sample, answers, outcomes, strict=True)
        ]
        majority = Counter(r["expected_label"] for r in sample).most_common(1)[0][1]
        rights = [a == r["expected_label"] for a, r in zip(answers, sample, strict=True)]
        return {
            "score": right / len(sample),
            "floor": majority / len(sample),
            **halves(outcomes, rights, sample),
            **self.common(outcomes, [json.dumps(a) for a in answers if a is not None], seconds),
        }

    def extract(self, fields: dict[str, list[str]], sample: list[Row], rest: list[Row]) -> dict[str, Any]:
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
        raw = {intent: exempt(task) for intent, task in tasks.items()}  # the engine grounds; scored both ways
        outcomes, seconds = self.ask([(raw[r["intent"]], r["text"]) for r in sample])
        n_cells = sum(len(fields[r["intent"]]) for r in sample)
        scores: dict[str, Any] = {}
        # What a dbt model gets: the answer grounded (values the text does not contain nulled), and the raw one.
        for grounded in (True, False):
            cells = rows_right = 0
            per_field: dict[str, Counter[str]] = defaultdict(Counter)
            for row, outcome in zip(sample, outcomes, strict=True):
                expected = json.loads(row["expected_json"])
                task = tasks[row["intent"]]
                result = task.ground(outcome.result, row["text"])[0] if grounded and outcome.result else outcome.result
                answer = json.loads(result) if result else None
                names = fields[row["intent"]]
                right = 0
                for n in names:
                    got, want = None if answer is None else norm(answer.get(n)), norm(expected.get(n))
                    verdict = (
                        "right"
                        if answer is not None and got == want
                        else "failed"
                        if answer is None
                        else ("invented" if want is None else "missed" if got is None else "wrong")
                    )
                    per_field[n][verdict] += 1
                    per_field[n]["stated"] += want is not None
                    right += verdict == "right"
                cells, rows_right = cells + right, rows_right + (right == len(names))
                if grounded:
                    self.answers.append(
                        {
                            "id": row["id"],
                            "text": row["text"],
                            "expected": expected,
                            "raw": outcome.result,
                            "answer": answer,
                        }
                    )
            prefix = "" if grounded else "raw_"
            scores[prefix + "score"], scores[prefix + "row_em"] = cells / n_cells, rows_right / len(sample)
            if grounded:
                scores["fields"] = per_field
        cells_null = sum(len(fields[r["intent"]]) - len(json.loads(r["expected_json"])) for r in sample)
        rows_null = sum(not json.loads(r["expected_json"]) for r in sample)
        return {
            **scores,
            "floor": cells_null / n_cells,
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
        folder = OWN_DATA if name == "us_addresses" else Path(self.args.datasets)
        with open(folder / SETS[name], newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        extract = name in EXTRACT_SETS
        fields: dict[str, list[str]] = {}
        if extract:
            rows, fields = extraction_set(name, rows)
        ordered = stratified(rows, "intent" if extract else "expected_label")
        sample, rest = ordered[: self.args.limit], ordered[self.args.limit :]
        print(f"{name}, {self.prompt}, K={self.rows_per_request}: {len(sample)} rows", file=sys.stderr)
        return self.extract(fields, sample, rest) if extract else self.classify(rows, sample, rest)


def extraction_set(name: str, rows: list[Row]) -> tuple[list[Row], dict[str, list[str]]]:
    """The rows of an extraction set (each with an `intent`: its group) and the fields asked per group."""
    if name == "us_addresses":
        return [{**r, "intent": "address"} for r in rows], {"address": ADDRESS_FIELDS}
    fields: dict[str, list[str]] = defaultdict(list)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        for slot in json.loads(row["expected_json"]):
            counts[row["intent"]][slot] += 1
            if slot not in fields[row["intent"]]:
                fields[row["intent"]].append(slot)
    if name == "snips_slots":
        return rows, fields
    # Most common first, ties by first appearance: Counter.most_common keeps insertion order on ties.
    top = {i: [s for s, _ in c.most_common(DENSE_FIELDS)] for i, c in counts.items() if len(c) >= DENSE_FIELDS}
    dense = []
    for row in rows:
        names = top.get(row["intent"])
        stated = json.loads(row["expected_json"])
        if names and sum(n in stated for n in names) >= DENSE_STATED:
            dense.append({**row, "expected_json": json.dumps({n: stated[n] for n in names if n in stated})})
    return dense, top


def halves(outcomes: list[Outcome], rights: list[bool], sample: list[Row]) -> dict[str, Any]:
    """The accuracy of the more and the less confident half of the answers that have a confidence."""
    scored = sorted(
        (
            (o.confidence, right, _h(r["id"]))
            for o, right, r in zip(outcomes, rights, sample, strict=True)
            if o.confidence is not None
        ),
        key=lambda t: (-t[0], t[2]),
    )
    half = len(scored) // 2
    if not half:
        return {"conf_rows": len(scored)}
    return {
        "conf_rows": len(scored),
        "conf": sum(c for c, _, _ in scored) / len(scored),
        "hi_half": sum(right for _, right, _ in scored[:half]) / half,
        "lo_half": sum(right for _, right, _ in scored[-half:]) / half,
    }


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
    from dbt_llm.local.server import Slots, shared_server

    started = time.monotonic()
    server = shared_server(args.model, Slots(n_parallel=args.concurrency))
    print(f"local server for {args.model} up in {time.monotonic() - started:.1f} s", file=sys.stderr)
    return lambda: OpenAIProvider(
        base_url=server.base_url,
        api_key=lambda: server.api_key,
        timeout=args.timeout,
        max_connections=args.concurrency,
        trust_env=False,
    )


Key = tuple[str, int, str]  # (set, K, prompt)


def table(results: dict[Key, dict[str, Any]]) -> str:
    """One line per (set, K, prompt), in the order given."""
    cols = ["rows", "score", "floor", "row_em", "row_floor", "raw_score", "raw_row_em", "top", "failed", "requests"]
    cols += ["rows/s", "prompt/row", "compl/row", "conf_rows", "conf", "hi_half", "lo_half"]

    def cell(value: Any) -> str:
        if value is None:
            return "-"
        return str(value) if isinstance(value, int) else f"{value:.2f}" if value < 10 else f"{value:.0f}"

    lines = [["set", "K", "prompt", *cols]]
    lines += [[name, str(k), prompt, *(cell(r.get(c)) for c in cols)] for (name, k, prompt), r in results.items()]
    widths = [max(len(line[i]) for line in lines) for i in range(len(cols) + 3)]
    return "\n".join(
        "  ".join(v.ljust(w) if i in (0, 2) else v.rjust(w) for i, (v, w) in enumerate(zip(line, widths, strict=True)))
        for line in lines
    )


def field_table(results: dict[Key, dict[str, Any]]) -> str:
    """Extraction on one set, per field name (over every intent that has it), per run: the share right, and the
    wrong cells by kind: `invented` (a value where the text states none), `missed` (null where it states
    one), `wrong` (another value). Grounded answers, as in `score`."""
    runs = [(key, r["fields"]) for key, r in results.items() if "fields" in r]
    names = sorted({n for _, per_field in runs for n in per_field})
    head = ["field", "asked", "stated"]
    for _set, k, prompt in [key for key, _ in runs]:
        tag = f"{prompt}" + (f" K={k}" if k != 1 else "")
        head += [f"{tag}: right", "invented", "missed", "wrong"]
    lines = [head]
    for n in names:
        first = runs[0][1][n]
        asked = sum(first[v] for v in ("right", "invented", "missed", "wrong", "failed"))
        line = [n, str(asked), str(first["stated"])]
        for _, per_field in runs:
            c = per_field[n]
            line += [f"{c['right'] / asked:.2f}", str(c["invented"]), str(c["missed"]), str(c["wrong"])]
        lines.append(line)
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
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
    p.add_argument("--model", help=f"default: {LOCAL_DEFAULT_MODEL} (local), gpt-4o-mini (openai)")
    p.add_argument("--base-url", default="https://api.openai.com/v1")
    p.add_argument("--api-key-env", default="OPENAI_API_KEY")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--datasets", default=str(DATASETS), help="folder of the sets (default: ../shared/datasets)")
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
    p.add_argument(
        "--baseline",
        choices=["naive"],
        help="also run the naive one-line prompt on the same sample, model and answer schema (one row per request)",
    )
    p.add_argument("--per-field", action="store_true", help="extraction: a table of right and wrong cells per field")
    p.add_argument(
        "--candidate-spans",
        type=int,
        default=0,
        metavar="N",
        help="extraction (prototype): string fields constrained to the text's word spans, for texts of <= N words",
    )
    p.add_argument("--answers", metavar="PATH", help="write every row's text, expected and given answer as JSON lines")
    args = p.parse_args()
    local = args.provider == "local"
    args.model = args.model or (LOCAL_DEFAULT_MODEL if local else "gpt-4o-mini")
    args.concurrency = args.concurrency or (2 if local else 8)
    names = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = sorted(set(names) - set(SETS))
    if unknown:
        sys.exit(f"unknown set(s) {unknown}; choose from {', '.join(SETS)}")

    factory = provider_factory(args)  # the local server starts here, once for every run
    results: dict[Key, dict[str, Any]] = {}
    seconds: dict[str, float] = {}
    answers: list[dict[str, Any]] = []
    runs = [(k, "dbt-llm") for k in args.rows_per_request] + ([(1, args.baseline)] if args.baseline else [])
    for k, prompt in runs:
        # A fresh engine per run: no in-flight request, limiter or calibration carries over from another run.
        engine = Engine(
            factory,
            prices=PriceTable(free=local),
            settings=EngineSettings(max_concurrency=args.concurrency, max_attempts=5, request_timeout=args.timeout),
        )
        started = time.monotonic()
        try:
            for name in names:
                bench = Bench(args, engine, k, prompt)
                results[name, k, prompt] = bench.run(name)
                answers += [{"set": name, "K": k, "prompt": prompt, **a} for a in bench.answers]
        finally:
            engine.close()
        seconds[f"{prompt} K={k}"] = time.monotonic() - started
    ordered = {(name, k, prompt): results[name, k, prompt] for name in names for k, prompt in runs}
    cost = sum(r["cost"] for r in results.values())
    wall = ", ".join(f"{run} {s:.0f} s" for run, s in seconds.items())
    print(
        f"{args.provider} {args.model}: limit {args.limit}, examples {args.examples}, "
        f"descriptions {'on' if args.descriptions else 'off'}, concurrency {args.concurrency}"
        + (f", candidate spans up to {args.candidate_spans} words" if args.candidate_spans else "")
        + "; "
        f"{wall}" + ("" if local else f", ${cost:.4f} (models with a known price)")
    )
    print(table(ordered))
    for name in names if args.per_field else []:  # one table per set: their fields differ
        runs_of_set = {key: r for key, r in ordered.items() if key[0] == name and "fields" in r}
        if runs_of_set:
            print(f"\n{name}:")
            print(field_table(runs_of_set))
    if args.answers:
        with open(args.answers, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(a, ensure_ascii=False) + "\n" for a in answers)


if __name__ == "__main__":
    main()
