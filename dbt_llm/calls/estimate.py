"""What requests would cost, sent nowhere: a dry run's estimate, on DuckDB and on Spark alike."""

from __future__ import annotations

from dataclasses import dataclass

from ..engine import Request
from ..engine.packing import estimate_tokens, packs_of
from ..pricing import Price


@dataclass(frozen=True)
class Estimate:
    requests: int  # one per pack of rows (one per row unpacked)
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None  # None: no price is known for the model


def estimate(requests: list[Request], price: Price | None, pack_chars: int) -> Estimate:
    """The requests as they would be sent: packed as the engine packs them, each pack's tokens
    counted from its messages (the same estimate the budget reserves)."""
    packs = packs_of(requests, lambda request: request, pack_chars)
    prompt = completion = 0
    for pack in packs:
        p, c = estimate_tokens(pack)
        prompt, completion = prompt + p, completion + c
    cost = None if price is None else price.cost(prompt, completion)
    return Estimate(len(packs), prompt, completion, cost)
