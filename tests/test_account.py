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


def test_rows_a_resolve_holds_are_not_hits_while_their_requests_run() -> None:
    # The statement counts a chunk's rows before dbt_llm_resolve gets its misses and waits for them:
    # live progress on a first run said "39 rows (39 cached)" while all 39 were being asked.
    a = account()
    a.count_rows(39)
    a.hold(38)
    assert a.snapshot().cache_hits == 1
    a.count_chunk(ChunkCounts(missed=38, reused=0, failed=0, skipped=0), fatal=False)
    assert (a.snapshot().cache_hits, a.held) == (1, 0)
    a.count_rows(10)
    a.hold(4)
    a.release(4)  # a chunk that raised before it was counted holds nothing after
    assert a.snapshot().cache_hits == 11
