"""Throughput behaviour that does not depend on timing: misses sparse among cached rows still
reach the provider as one stream, not one DuckDB chunk at a time."""

from __future__ import annotations

from conftest import DbtProject
from ratelimited_server import Latency, RateLimitedOpenAI

LABELS = "['billing', 'bug', 'other']"
ROWS = 20_480  # ten DuckDB chunks of 2,048 rows


def write_models(project: DbtProject, new_every: int | None) -> None:
    body = "'ticket ' || (i % 500)"
    if new_every:
        body = f"case when i % {new_every} = 7 then 'new ticket ' || i else {body} end"
    project.write("models/src.sql", f"select i as id, {body} as body from range({ROWS}) t(i)\n")
    project.write(
        "models/classified.sql",
        f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as label from {{{{ ref('src') }}}}\n",
    )


def test_sparse_misses_go_out_together_not_chunk_by_chunk(project: DbtProject) -> None:
    with RateLimitedOpenAI(rpm=10**6, tpm=10**9, latency=Latency.fixed(0.3)) as server:
        project.plugin_config.update(base_url=server.base_url, max_concurrency=8)
        write_models(project, new_every=None)
        project.dbt("run")
        assert server.stats().admitted == 500

        # 20 new texts, one every 1,024 rows: about two per chunk among cached rows.
        server.reset()
        write_models(project, new_every=1024)
        project.dbt("run")
        stats = server.stats()
        assert stats.admitted == 20
        # Chunk by chunk, the server would never hold more than a chunk's few misses at once.
        assert stats.max_inflight == 8

    audit = project.query("select rows, cache_hits, api_calls from dbt_llm.llm_audit order by started_at desc limit 1")
    assert audit == [(ROWS, ROWS - 20, 20)]
    assert project.query("select count(*), count(label) from classified")[0] == (ROWS, ROWS)


def test_a_query_that_stops_early_does_not_pay_for_every_row(project: DbtProject) -> None:
    # The prefetch sees every distinct text before LIMIT applies; it starts only from the second
    # chunk that waits for answers, so a query that needs one chunk pays for exactly its rows.
    rows = ["id,body"] + [f"{i},ticket {i} about something" for i in range(300)]
    project.write("seeds/t.csv", "\n".join(rows) + "\n")
    project.write(
        "models/first_ten.sql",
        f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as label from {{{{ ref('t') }}}} limit 10\n",
    )
    project.dbt("seed")
    # A dry run prices the rows the query asks for, not what the prefetch saw.
    project.dbt("run", "--vars", "{dbt_llm_dry_run: true}", ok=False)
    assert project.server.requests == []
    assert project.query("select est_requests from dbt_llm.llm_audit") == [(10,)]

    project.dbt("run")
    assert project.query("select count(label) from first_ten")[0][0] == 10
    assert len(project.server.requests) == 10
