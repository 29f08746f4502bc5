"""Prices in USD per 1M tokens (list, cached-input, cache-write and batch), and the cost of one call."""

from __future__ import annotations

from dataclasses import dataclass

BATCH_SHARE = 0.5  # OpenAI, Anthropic, Gemini and Mistral sell batch tokens at half the list price
CACHE_WRITE_SHARE = 1.25  # Anthropic bills prompt tokens written to its cache (5-minute TTL) at 1.25x input


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens. Prompt tokens the provider served from its prefix cache cost `cached_input`
    (the input price when unknown); prompt tokens written to the cache (Anthropic's cache_control)
    cost `cache_write_input`, 1.25x input unless given; batch mode costs `batch_input`/`batch_output`,
    half the list price unless given, and half the cache prices."""

    input: float
    output: float
    cached_input: float | None = None
    batch_input: float | None = None
    batch_output: float | None = None
    cache_write_input: float | None = None

    def cost(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0, cache_write_tokens: int = 0
    ) -> float:
        """`cached_tokens` and `cache_write_tokens` are parts of `prompt_tokens`."""
        cached = min(max(cached_tokens, 0), prompt_tokens)
        written = min(max(cache_write_tokens, 0), prompt_tokens - cached)
        cached_price = self.input if self.cached_input is None else self.cached_input
        write_price = self.input * CACHE_WRITE_SHARE if self.cache_write_input is None else self.cache_write_input
        plain = prompt_tokens - cached - written
        return (
            plain * self.input + cached * cached_price + written * write_price + completion_tokens * self.output
        ) / 1_000_000

    def for_batch(self) -> Price:
        """The price of the same tokens through the provider's Batch API: half, unless given."""
        return Price(
            self.input * BATCH_SHARE if self.batch_input is None else self.batch_input,
            self.output * BATCH_SHARE if self.batch_output is None else self.batch_output,
            None if self.cached_input is None else self.cached_input * BATCH_SHARE,
            # None: 1.25x the batch input price, which is half already
            cache_write_input=None if self.cache_write_input is None else self.cache_write_input * BATCH_SHARE,
        )


def claude(input: float, output: float) -> Price:
    """Anthropic's list price: cache reads at 0.1x input, cache writes (5-minute TTL) at 1.25x."""
    return Price(input, output, cached_input=round(input * 0.1, 6), cache_write_input=round(input * 1.25, 6))


# Public list prices (USD per 1M tokens, standard tier, cached input where the provider lists one).
# The profile's `prices:` overrides them.
BUILTIN_PRICES: dict[str, Price] = {
    "gpt-4o-mini": Price(0.15, 0.60, cached_input=0.075),
    "gpt-4o": Price(2.50, 10.00, cached_input=1.25),
    "gpt-4.1": Price(2.00, 8.00, cached_input=0.50),
    "gpt-4.1-mini": Price(0.40, 1.60, cached_input=0.10),
    "gpt-4.1-nano": Price(0.10, 0.40, cached_input=0.025),
    "gpt-5": Price(1.25, 10.00, cached_input=0.125),
    "gpt-5-mini": Price(0.25, 2.00, cached_input=0.025),
    "gpt-5-nano": Price(0.05, 0.40, cached_input=0.005),
    "o4-mini": Price(1.10, 4.40, cached_input=0.275),
    # Claude (Anthropic's pricing page); a dated id such as claude-sonnet-4-5-20250929 is priced by its prefix.
    "claude-opus-4": claude(15.00, 75.00),  # Opus 4 and 4.1
    "claude-opus-4-1": claude(15.00, 75.00),
    "claude-opus-4-5": claude(5.00, 25.00),
    "claude-opus-4-6": claude(5.00, 25.00),
    "claude-opus-4-7": claude(5.00, 25.00),
    "claude-opus-4-8": claude(5.00, 25.00),
    "claude-sonnet-4": claude(3.00, 15.00),  # Sonnet 4, 4.5 and 4.6
    "claude-haiku-4-5": claude(1.00, 5.00),
    "claude-3-5-haiku": claude(0.80, 4.00),
    # Embedding models bill input tokens only.
    "text-embedding-3-small": Price(0.02, 0.0),
    "text-embedding-3-large": Price(0.13, 0.0),
    "text-embedding-ada-002": Price(0.10, 0.0),
}


class PriceTable:
    """Looks up a model's price: exact name first, then the longest known prefix
    (so `gpt-4o-mini-2024-07-18` is priced as `gpt-4o-mini`)."""

    def __init__(self, overrides: dict[str, Price] | None = None, *, free: bool = False) -> None:
        self._prices = {**BUILTIN_PRICES, **(overrides or {})}
        self._free = free

    def price(self, model: str, *, batch: bool = False) -> Price | None:
        """The model's list price, or with `batch` its price through the provider's Batch API: the one
        place every path (realtime, batch lines, a dry run's estimate, a job's reservation) asks."""
        price = self._list_price(model)
        return price.for_batch() if price is not None and batch else price

    def _list_price(self, model: str) -> Price | None:
        if self._free:
            return Price(0.0, 0.0)
        if model in self._prices:
            return self._prices[model]
        best = max((name for name in self._prices if model.startswith(name + "-")), key=len, default=None)
        return self._prices[best] if best else None
