"""Budget reservations: a request reserves its estimated cost before it is sent, so requests in
flight cannot carry the spend past the cap (the dbt-level promise is in test_failures.py)."""

from __future__ import annotations

import pytest

from dbt_llm.engine.budget import Budget


def test_a_request_waits_while_reservations_in_flight_fill_the_cap_and_is_refused_once_it_cannot_fit() -> None:
    budget = Budget(1.0)
    assert budget.reserve(0.4) == "reserved" and budget.reserve(0.4) == "reserved"
    assert budget.reserve(0.4) == "wait"  # fits only if those in flight cost less than they reserved
    budget.settle(0.4, 0.1)
    assert budget.reserve(0.4) == "reserved"
    budget.settle(0.4, 0.4)
    budget.settle(0.4, 0.4)
    assert budget.spent_usd == pytest.approx(0.9)
    assert budget.reserve(0.2) == "over"  # would pass the cap even with nothing in flight
    assert budget.reserve(0.1) == "reserved"


def test_no_cap_reserves_everything_and_still_counts_the_spend() -> None:
    budget = Budget(None)
    assert all(budget.reserve(1e6) == "reserved" for _ in range(3))
    budget.settle(1e6, 2.5)
    assert budget.spent_usd == 2.5


def test_a_model_cap_under_the_invocation_cap() -> None:
    invocation = Budget(1.0)
    model = Budget(0.3, parent=invocation)
    assert model.capped and Budget(None, parent=invocation).capped and not Budget(None).capped
    assert model.reserve(0.2) == "reserved"
    model.settle(0.2, 0.2)
    assert (model.spent_usd, invocation.spent_usd) == (0.2, 0.2)  # the parent is charged too
    assert model.reserve(0.2) == "over"  # the model's cap, though the invocation has room
    assert invocation.reserve(0.7) == "reserved"  # another model takes the rest of the invocation's
    assert Budget(None, parent=invocation).reserve(0.2) == "wait"  # fits only if the 0.7 costs less
    invocation.settle(0.7, 0.7)
    other = Budget(0.5, parent=invocation)
    assert other.reserve(0.2) == "over"  # the invocation is at 0.9 of 1.0: the parent says no ...
    assert other.reserve(0.1) == "reserved"  # ... and the refused reservation left nothing behind
