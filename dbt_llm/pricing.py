"""Prices in USD per 1M tokens, and the cost of one call."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Price:
    input: float
    output: float

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input + completion_tokens * self.output) / 1_000_000


# Public list prices (USD per 1M tokens, standard tier). The profile's `prices:` overrides them.
BUILTIN_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60),
    "gpt-4o": Price(2.50, 10.00),
    "gpt-4.1": Price(2.00, 8.00),
    "gpt-4.1-mini": Price(0.40, 1.60),
    "gpt-4.1-nano": Price(0.10, 0.40),
    "gpt-5": Price(1.25, 10.00),
    "gpt-5-mini": Price(0.25, 2.00),
    "gpt-5-nano": Price(0.05, 0.40),
    "o4-mini": Price(1.10, 4.40),
}


class PriceTable:
    """Looks up a model's price: exact name first, then the longest known prefix
    (so `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`)."""

    def __init__(self, overrides: dict[str, Price] | None = None, *, free: bool = False) -> None:
        self._prices = {**BUILTIN_PRICES, **(overrides or {})}
        self._free = free

    def price(self, model: str) -> Price | None:
        if self._free:
            return Price(0.0, 0.0)
        if model in self._prices:
            return self._prices[model]
        best = max((name for name in self._prices if model.startswith(name + "-")), key=len, default=None)
        return self._prices[best] if best else None
