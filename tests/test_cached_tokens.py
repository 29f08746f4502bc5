"""Prompt tokens the provider serves from its prefix cache are recorded and priced at the cached-input
price, realtime and batch alike."""

from __future__ import annotations

import pytest
from conftest import DbtProject

N = 12
# 300 labels: a fixed prompt of well over 1024 tokens, the least the provider caches.
LABELS = [f"category_number_{i:03d}" for i in range(300)]


@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_cached_prompt_tokens_are_recorded_and_priced_at_the_cached_price(project: DbtProject, mode: str) -> None:
    project.plugin_config.update(max_concurrency=1, batch_poll_interval=0.05)
    project.plugin_config["prices"] = {"gpt-4o-mini": {"input": 0.15, "output": 0.60, "cached_input": 0.075}}
    project.write("seeds/t.csv", "id,body\n" + "".join(f"{i},ticket {i}: my invoice is wrong\n" for i in range(N)))
    project.write(
        "models/m.sql", f"select id, {{{{ dbt_llm.llm_classify('body', {LABELS}) }}}} as l from {{{{ ref('t') }}}}\n"
    )
    project.dbt("seed")
    project.dbt("run", "--vars", f"{{dbt_llm_mode: {mode}}}")
    billed = project.server.requests if mode == "realtime" else project.server.batch_requests
    cached = sum(r.cached_tokens for r in billed)
    assert cached > 0 and len(billed) == N  # the first request fills the provider's cache, later ones hit it
    prompt, completion, cached_audit, cost = project.query(
        "select prompt_tokens, completion_tokens, cached_prompt_tokens, cost_usd from dbt_llm.llm_audit"
    )[0]
    assert cached_audit == cached and prompt == sum(r.prompt_tokens for r in billed)
    share = 1.0 if mode == "realtime" else 0.5  # batch: half of each price
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per 1M tokens.
    expected = share * ((prompt - cached) * 0.15 + cached * 0.075 + completion * 0.60) / 1e6
    assert cost == pytest.approx(expected)
    assert cost < share * (prompt * 0.15 + completion * 0.60) / 1e6  # what it would cost without the cache
