"""Token logprobs for FakeOpenAI's answers, in OpenAI's form: ``choices[0].logprobs.content[]`` =
``{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}``, given only when the request
asks (``logprobs: true``; ``top_logprobs`` alternatives each, 0 to 20).

The answer is cut into tokens that spell ``json.dumps(answer)`` exactly: punctuation, each key, and
each value (a string's text between its quotes, a boolean, a number) as one token. Every token is
certain (logprob 0, itself its only alternative) unless ``FakeOpenAI.set_logprobs(match, probs)``
gave the rows whose text contains ``match`` a distribution: their value tokens then get the logprob
of ``probs[token]`` (or of what ``probs`` leaves over when the token is not in it) and, as
alternatives, the most likely entries of ``probs`` with their logprobs, e.g.
``{"billing": 0.6, "shipping": 0.2, "Sure": 0.2}`` (``Sure`` is no label: a client renormalising
over the labels gets 0.75 for ``billing``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

Probs = dict[str, float]


def _entry(token: str, logprob: float) -> dict[str, Any]:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def _pieces(value: Any, emit: Callable[[str, bool], None]) -> None:
    """json.dumps(value)'s text, piece by piece; True marks a value's token."""
    if isinstance(value, dict):
        emit("{", False)
        for i, (key, item) in enumerate(value.items()):
            emit((", " if i else "") + json.dumps(key) + ": ", False)
            _pieces(item, emit)
        emit("}", False)
    elif isinstance(value, list):
        emit("[", False)
        for i, item in enumerate(value):
            if i:
                emit(", ", False)
            _pieces(item, emit)
        emit("]", False)
    elif isinstance(value, str):
        emit('"', False)
        if value:
            emit(json.dumps(value)[1:-1], True)
        emit('"', False)
    else:
        emit(json.dumps(value), True)


def _token(token: str, probs: Probs | None, top: int) -> dict[str, Any]:
    if probs is None or not token:
        entry = _entry(token, 0.0)
        entry["top_logprobs"] = [_entry(token, 0.0)][:top]
        return entry
    p = probs.get(token, max(1e-12, 1.0 - sum(probs.values())))
    entry = _entry(token, math.log(p))
    ranked = sorted({**probs, token: p}.items(), key=lambda kv: -kv[1])[:top]
    entry["top_logprobs"] = [_entry(t, math.log(q)) for t, q in ranked]
    return entry


def logprobs_of(
    answer: Any, rows: dict[str, str], text: str, top: int, probs_of: Callable[[str], Probs | None]
) -> list[dict[str, Any]]:
    """The ``logprobs.content`` of ``json.dumps(answer)``; ``rows``: a packed answer's id -> text
    (``{}`` unpacked, then ``text`` is the row's), ``probs_of(text)``: a row's distribution or None."""
    tokens: list[dict[str, Any]] = []

    def row(value: Any, row_text: str) -> None:
        probs = probs_of(row_text)
        _pieces(value, lambda piece, is_value: tokens.append(_token(piece, probs if is_value else None, top)))

    if rows and isinstance(answer, dict):
        for i, (row_id, value) in enumerate(answer.items()):
            tokens.append(_token(("{" if not i else ", ") + json.dumps(row_id) + ": ", None, top))
            row(value, rows.get(row_id, ""))
        tokens.append(_token("}", None, top))
    else:
        row(answer, text)
    assert "".join(t["token"] for t in tokens) == json.dumps(answer)
    return tokens
