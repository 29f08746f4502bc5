"""A batch job is paid when it ends, so its estimated cost is held against the budget from the moment
it is sent, a pack's shared by its rows; what does not fit is not sent (`budget`). Both faces use it."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..engine import Request
from ..engine.packing import estimate_tokens, packs_of
from ..pricing import Price


@dataclass
class Held:
    """The requests that fit, what each holds of the budget, and those that did not fit."""

    sendable: list[Request] = field(default_factory=list)
    reserved: dict[str, float] = field(default_factory=dict)  # key -> its share of its pack's estimate
    refused: list[Request] = field(default_factory=list)

    def release(self, request: Request, cost: float) -> None:
        """The request's line was settled (its answer cost `cost`, 0 without one)."""
        reserved = self.reserved.pop(request.key, None)
        if reserved is not None:
            request.budget.settle(reserved, cost)


def reserve_jobs(requests: list[Request], price: Price | None, pack_chars: int, held: Held | None = None) -> Held:
    """Reserve each pack's estimated cost; "wait" counts as not fitting too: nothing of the call
    settles before its job ends."""
    held = held if held is not None else Held()
    for pack in packs_of(requests, lambda request: request, pack_chars):
        estimate = 0.0 if price is None else price.cost(*estimate_tokens(pack))
        if pack[0].budget.reserve(estimate) == "reserved":
            held.reserved.update((request.key, estimate / len(pack)) for request in pack)
            held.sendable += pack
        else:
            held.refused += pack
    return held
