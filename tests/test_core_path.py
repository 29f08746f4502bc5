"""The core path on the real example project: first run, rerun, changed rows, full refresh, audit."""

from __future__ import annotations

import math

from conftest import PRICES, DbtProject, is_classify

BLANK = "nullif(trim({c}, ' ' || chr(9) || chr(10) || chr(13)), '')"


def distinct_inputs(project: DbtProject, column: str) -> int:
    sql = f"select count(distinct {BLANK.format(c=column)}) from raw_vendors"
    return int(project.query(sql)[0][0])


def calls(project: DbtProject) -> tuple[int, int]:
    reqs = project.server.requests
    classify = sum(1 for r in reqs if is_classify(r))
    return classify, len(reqs) - classify


def test_first_run_rerun_changed_rows_and_full_refresh(example: DbtProject) -> None:
    example.dbt("seed")
    example.dbt("run", "--select", "enriched_vendors")

    # First run: one call per distinct non-blank text and function, every such row answered.
    assert calls(example) == (distinct_inputs(example, "description"), distinct_inputs(example, "address"))
    missing = example.query(
        f"""select count(*) filter (where {BLANK.format(c="description")} is not null and category is null),
                   count(*) filter (where {BLANK.format(c="address")} is not null and addr is null),
                   count(*) filter (where {BLANK.format(c="description")} is null and category is not null),
                   count(*)
            from enriched_vendors"""
    )[0]
    assert missing == (0, 0, 0, 200)
    labels = {r[0] for r in example.query("select distinct category from enriched_vendors where category is not null")}
    assert labels <= {"software", "hardware", "services", "other"}

    # Rerun: nothing new, nothing sent.
    example.server.reset()
    example.dbt("run", "--select", "enriched_vendors")
    assert calls(example) == (0, 0)

    # Five rows change: exactly five calls per function.
    example.execute(
        """update raw_vendors
           set description = 'Renewed software licence for the ticketing SaaS, seat ' || vendor_id,
               address = 'city: Lyon, country: France, postal_code: 6900' || (vendor_id % 10),
               updated_at = timestamp '2027-01-01 00:00:00'
           where vendor_id in (3, 17, 42, 99, 150)"""
    )
    example.dbt("run", "--select", "enriched_vendors")
    assert calls(example) == (5, 5)
    changed = example.query(
        "select category, addr.city, addr.country from enriched_vendors where vendor_id in (3, 17, 42, 99, 150)"
    )
    assert changed == [("software", "Lyon", "France")] * 5

    # Full refresh rebuilds every row from the cache.
    example.server.reset()
    example.dbt("run", "--select", "enriched_vendors", "--full-refresh")
    assert calls(example) == (0, 0)
    assert example.query("select count(*), count(category) from enriched_vendors")[0] == (200, 190)

    example.dbt("test", "--select", "enriched_vendors", "--exclude", "addresses_have_a_city")


def test_audit_matches_server_usage_and_prices(example: DbtProject) -> None:
    example.dbt("seed")
    example.dbt("run", "--select", "enriched_vendors")
    reqs = example.server.requests
    audit = example.query(
        """select function, rows, cache_hits, api_calls, retries, failed_rows, prompt_tokens, completion_tokens,
                  cost_usd, status, started_at <= finished_at
           from dbt_llm.llm_audit order by function"""
    )
    assert [a[0] for a in audit] == ["classify", "extract"]
    price = PRICES["gpt-4o-mini"]
    for row, function_reqs in zip(  # noqa: B905 - both have two items
        audit, ([r for r in reqs if is_classify(r)], [r for r in reqs if not is_classify(r)])
    ):
        _, rows, hits, api_calls, retries, failed, prompt, completion, cost, status, ordered = row
        assert api_calls == len(function_reqs) and retries == 0 and failed == 0
        assert prompt == sum(r.prompt_tokens for r in function_reqs)
        assert completion == sum(r.completion_tokens for r in function_reqs)
        assert math.isclose(cost, (prompt * price["input"] + completion * price["output"]) / 1e6, rel_tol=1e-9)
        # Rows repeating a text earlier in the run are hits: only distinct texts are paid for.
        assert hits == rows - len({r.text for r in function_reqs}) and status == "success" and ordered

    # The cache holds exactly what was paid for, with its tokens.
    cached = example.query("select count(*), sum(prompt_tokens), sum(completion_tokens) from dbt_llm.llm_cache")[0]
    assert cached == (len(reqs), sum(r.prompt_tokens for r in reqs), sum(r.completion_tokens for r in reqs))

    # A cached rerun leaves its own audit rows: all hits, no calls, no cost.
    example.dbt("run", "--select", "enriched_vendors", "--full-refresh")
    rerun = example.query(
        """select function, rows, cache_hits, api_calls, cost_usd from dbt_llm.llm_audit
           where invocation_id <> (select min_by(invocation_id, started_at) from dbt_llm.llm_audit)
           order by function"""
    )
    assert [(f, r == h, c, cost) for f, r, h, c, cost in rerun] == [
        ("classify", True, 0, 0.0),
        ("extract", True, 0, 0.0),
    ]

    # The example's cost model reads the audit table.
    example.dbt("run", "--select", "llm_costs_by_model")
    costs = example.query("select function, runs, api_calls from llm_costs_by_model order by function")
    assert costs == [("classify", 2, audit[0][3]), ("extract", 2, audit[1][3])]
