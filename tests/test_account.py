"""An audit row's counters are written once, as the rows are counted: dbt_llm_tally counts rows,
dbt_llm_resolve the missed rows of its chunk, and cache_hits is what neither a request nor an earlier
answer had to serve; no snapshot shows a value waiting for a correction."""

from __future__ import annotations

from dbt_llm.calls.ledger import Ledger
from dbt_llm.duckdb.account import Account, ChunkCounts


def account() -> Account:
    ledger = Ledger("inv", "model.p.m", "", "classify", "gpt-4o-mini", provider="openai", command="run", hooked=True)
    return Account(ledger)


def test_cache_hits_are_the_rows_less_those_a_request_answered() -> None:
    a = account()
    assert a.count_rows(5) and a.snapshot().cache_hits == 5  # the first chunk writes the row
    assert not a.count_rows(0)
    a.count_chunk(ChunkCounts(missed=3, reused=1, failed=1, skipped=0), fatal=False)
    row = a.snapshot()
    assert (row.rows, row.cache_hits, row.failed_rows, a.ledger.reused) == (5, 3, 1, 1)
    a.count_rows(4)
    a.count_chunk(ChunkCounts(missed=2, reused=2, failed=0, skipped=1), fatal=True)
    row = a.snapshot()
    # Rows an earlier answer of this run served are hits too (the summary names them "reused").
    assert (row.rows, row.cache_hits, row.skipped_rows, a.ledger.reused) == (9, 7, 1, 3)
    assert a.ledger.status == "running"  # a snapshot of an open row says running, whatever failed
    assert a.close("error").status == "error" and a.ledger.closed
