"""`dbt-llm pull` and `dbt-llm models`: the embedded models, fetched and digest-checked."""

from __future__ import annotations

import argparse
import sys

from ..errors import DbtLlmError
from .audit import table


def run(args: argparse.Namespace) -> int:
    from ..local.pull import pull, verify
    from ..local.registry import DEFAULT_EMBEDDING_MODEL, DEFAULT_MODEL, MODELS

    marks = {DEFAULT_MODEL: " (default)", DEFAULT_EMBEDDING_MODEL: " (default for llm_embed)"}

    try:
        if args.command == "pull":
            path = pull(args.model or DEFAULT_MODEL, args.dir)
            print(f"ready: {path}")
            return 0
        rows = [
            (
                m.name + marks.get(m.name, ""),
                f"{m.size_mb:.0f} MB",
                m.license,
                "yes" if verify(m) else "no",
                m.description,
            )
            for m in MODELS.values()
        ]
        print(table(["model", "size", "licence", "downloaded", "what it is"], rows))
        return 0
    except DbtLlmError as exc:
        print(exc, file=sys.stderr)
        return 1
