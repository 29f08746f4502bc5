"""The confidence of a classify or filter answer: the probability the model gave its answer among the
answers the schema allows, read from the token logprobs of the completion.

Logprobs are the model's distribution over its whole vocabulary at each step, before structured
outputs mask the tokens the schema forbids (llama.cpp's grammar, OpenAI's strict mode). So at each
token of the answer's value, the alternatives the provider shows (`top_logprobs`) are sorted by the
answer they lead to: forbidden ones (no allowed answer starts that way) are dropped, and the rest
renormalised. Walking the value's tokens until the answer is decided:

    R_i = ((p_chosen + p_ambiguous) * R_{i+1} + p_only_ours) / (p_allowed)      R_end = 1

where `only_ours` are alternatives that lead to the chosen answer alone, `ambiguous` ones still
allow it and others (assumed to go on as the chosen path does), and `p_allowed` adds the ones that
lead only to other answers. The confidence is R_0.

What is approximated (see the README, "Accuracy and confidence"): alternatives outside the top
`top_logprobs` are unseen (their mass counts for nobody); an alternative that diverges towards
another answer is counted whole, its continuation unobserved; an ambiguous alternative (another
tokenisation that still allows the chosen answer) is assumed to end as the chosen path does."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass

# One token of a completion: its bytes, its logprob, and the alternatives (bytes, logprob) shown.
Token = tuple[bytes, float, Sequence[tuple[bytes, float]]]
Tokens = Sequence[Token]

TOP_LOGPROBS = 20  # the most OpenAI's chat completions show (0..20)
_WS = b" \t\n\r"


@dataclass(frozen=True)
class Choices:
    """The answers the schema allows at one JSON key, each as the bytes that spell it (a string's
    quotes included), keyed by the answer's canonical JSON value; `name`: the answer's field in the
    STRUCT with_confidence returns."""

    key: str
    terms: dict[str, bytes]
    name: str

    @classmethod
    def labels(cls, key: str, names: Sequence[str]) -> Choices:
        spelled = [json.dumps(n, ensure_ascii=False) for n in names]
        return cls(key, {s: s.encode() for s in spelled}, "label")

    @classmethod
    def booleans(cls, key: str) -> Choices:
        return cls(key, {"true": b"true", "false": b"false"}, "value")


def confidence(content: str, value: object, tokens: Tokens | None, choices: Choices, row_id: str = "") -> float | None:
    """The probability of answer `value` at `choices.key` of `content` (in the object under `row_id`
    for a packed answer); None when the tokens are missing or do not spell the content."""
    term = choices.terms.get(json.dumps(value, ensure_ascii=False))
    if not tokens or term is None:
        return None
    joined = b"".join(t[0] for t in tokens)
    body = content.encode()
    offset = joined.find(body)  # llama.cpp may wrap the content in tokens it strips (a ``` fence)
    anchor = re.escape(json.dumps(choices.key))
    if row_id:
        anchor = re.escape(json.dumps(row_id)) + r"\s*:\s*\{\s*" + anchor
    found = re.search(anchor + r"\s*:", content)
    if offset < 0 or found is None:
        return None
    start = offset + len(content[: found.end()].encode())
    if not joined[start:].lstrip(_WS).startswith(term):
        return None  # spelled otherwise (escapes): not ours to read
    return _walk(tokens, start, term, list(choices.terms.values()))


def _consistent(rest: bytes, term: bytes) -> bool:
    """Whether the value text `rest` (whitespace first allowed) can still become, or already is, `term`."""
    rest = rest.lstrip(_WS)
    return term.startswith(rest) or rest.startswith(term)


def _walk(tokens: Tokens, start: int, chosen: bytes, terms: list[bytes]) -> float | None:
    """R_0 of the module's formula, over the tokens from byte `start` on."""
    joined = b"".join(t[0] for t in tokens)
    steps: list[tuple[float, float, float]] = []  # per token: (chosen + ambiguous, only ours, allowed) mass
    pos = 0
    for text, logprob, top in tokens:
        end = pos + len(text)
        if end > start:
            sofar = joined[start:pos] if pos > start else b""
            if [t for t in terms if _consistent(sofar, t)] == [chosen]:
                break  # decided: no token from here on changes the answer
            pre = text[: start - pos] if pos < start else b""  # the token's part before the value
            step = _step(_options(text, logprob, top), text, pre, sofar, chosen, terms)
            if step is None:
                return None
            steps.append(step)
        pos = end
    result = 1.0
    for kept, ours, allowed in reversed(steps):
        result = (kept * result + ours) / allowed
    return min(1.0, max(0.0, result))


def _options(text: bytes, logprob: float, top: Sequence[tuple[bytes, float]]) -> dict[bytes, float]:
    """The alternatives shown at one step, with the chosen token, by their bytes."""
    options: dict[bytes, float] = {}
    for alt, lp in top:
        options[alt] = options.get(alt, 0.0) + _p(lp)  # two token ids may spell the same bytes
    if text not in options:  # the grammar may have picked a token outside the model's own top list
        options[text] = _p(logprob)
    return options


def _step(
    options: dict[bytes, float], text: bytes, pre: bytes, sofar: bytes, chosen: bytes, terms: list[bytes]
) -> tuple[float, float, float] | None:
    """(chosen + ambiguous, only ours, allowed) probability mass at one token."""
    kept = ours = allowed = 0.0
    for alt, p in options.items():
        if not alt.startswith(pre):
            if pre.startswith(alt):  # shorter, still in the punctuation before the value: decides nothing
                kept += p
                allowed += p
            continue  # another layout of the punctuation before the value: not followed
        rest = sofar + alt[len(pre) :]
        leads_to = [t for t in terms if _consistent(rest, t)]
        if not leads_to:
            continue  # the schema forbids it: the grammar masked it
        allowed += p
        if chosen not in leads_to:
            continue
        if alt == text or len(leads_to) > 1:
            kept += p
        else:
            ours += p
    if allowed <= 0 or not math.isfinite(allowed):
        return None
    return kept, ours, allowed


def _p(logprob: float) -> float:
    return math.exp(logprob) if math.isfinite(logprob) else 0.0
