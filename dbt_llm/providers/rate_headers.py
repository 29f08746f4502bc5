"""The `x-ratelimit-*` headers of a response: what the limiter learns the endpoint's budgets from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RateHeaders:
    limit_requests: float | None = None
    remaining_requests: float | None = None
    limit_tokens: float | None = None
    remaining_tokens: float | None = None

    @classmethod
    def parse(cls, headers: dict[str, str]) -> RateHeaders | None:
        def num(name: str) -> float | None:
            value = headers.get(name)
            try:
                return float(value) if value is not None else None
            except ValueError:
                return None

        parsed = cls(
            num("x-ratelimit-limit-requests"),
            num("x-ratelimit-remaining-requests"),
            num("x-ratelimit-limit-tokens"),
            num("x-ratelimit-remaining-tokens"),
        )
        return parsed if any(v is not None for v in parsed.__dict__.values()) else None
