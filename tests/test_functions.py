"""llm_filter, llm_complete and multi-label llm_classify in real dbt runs against the local server:
the same cache, dedup, audit and failure handling as classify and extract."""

from __future__ import annotations

import pytest
from conftest import DbtProject

# Repeated texts, a NULL and blanks: 7 rows, 3 distinct texts to send.
SEED = """id,body
1,the app crashed and I want a refund
2,please add dark mode
3,the app crashed and I want a refund
4,
5,"   "
6,please add dark mode
7,billing is wrong and the app crashed
"""


def run(project: DbtProject, select: str) -> None:
    project.write("seeds/t.csv", SEED)
    project.write("models/m.sql", f"select id, {select} as v from {{{{ ref('t') }}}}\n")
    project.dbt("seed")
    project.dbt("run")


def audit_matches_server(project: DbtProject, function: str, requests: int = 3, rows: int = 5) -> None:
    """By default: 3 distinct texts sent once each; 5 rows with text, 2 of them repeats (the NULL and
    the blank row cost nothing)."""
    sent = project.server.requests
    calls, prompt, completion, audited_rows, hits = project.query(
        "select api_calls, prompt_tokens, completion_tokens, rows, cache_hits from dbt_llm.llm_audit "
        f"where function = '{function}'"
    )[0]
    assert calls == len(sent) == requests
    assert (prompt, completion) == (sum(r.prompt_tokens for r in sent), sum(r.completion_tokens for r in sent))
    assert (audited_rows, hits) == (rows, 2)


def rerun_sends_nothing(project: DbtProject) -> None:
    project.server.reset()
    project.dbt("run")
    assert project.server.requests == []


def test_llm_filter_answers_booleans(project: DbtProject) -> None:
    run(project, "{{ dbt_llm.llm_filter('body', 'Does the customer say the app crashed?', rows_per_request=4) }}")
    rows = project.query("select id, v from m order by id")
    assert all(isinstance(v, bool) for i, v in rows if i not in (4, 5))
    assert [v for i, v in rows if i in (4, 5)] == [None, None]
    assert rows[0][1] == rows[2][1]  # equal texts, equal answers
    [packed] = project.server.requests  # the 3 distinct texts in one request
    assert packed.schema["properties"]["r1"]["properties"]["answer"]["type"] == "boolean"
    audit_matches_server(project, "filter", requests=1)
    rerun_sends_nothing(project)


def test_llm_complete_answers_free_text(project: DbtProject) -> None:
    run(project, """{{ dbt_llm.llm_complete("'Summarise: ' || body", max_tokens=60) }}""")
    rows = dict(project.query("select id, v from m"))
    assert rows[1] == rows[3] == "Reply to: Summarise: the app crashed and I want a refund"
    assert rows[4] is None  # a NULL prompt: no call
    assert rows[5] == "Reply to: Summarise:"  # 'Summarise: ' || '   ' is not blank: a prompt like any other
    assert all(r.schema is None for r in project.server.requests)  # free text: no response_format
    audit_matches_server(project, "complete", requests=4, rows=6)
    rerun_sends_nothing(project)


def test_llm_complete_keeps_an_answer_cut_at_its_max_tokens(project: DbtProject) -> None:
    project.server.inject("truncated", match="dark mode")
    run(project, "{{ dbt_llm.llm_complete('body', max_tokens=5) }}")
    assert project.query("select v from m where id = 2") == [("Reply to: pleas",)]  # cut, as asked
    assert len(project.server.requests) == 3  # not retried


def test_multi_label_classify_answers_any_subset(project: DbtProject) -> None:
    labels = "['billing', 'crashed', 'refund', 'dark mode']"
    run(project, f"{{{{ dbt_llm.llm_classify('body', {labels}, multi_label=true) }}}}")
    rows = dict(project.query("select id, v from m"))
    assert rows[1] == ["crashed", "refund"] and rows[2] == ["dark mode"]
    assert rows[7] == ["billing", "crashed"]  # in the order of the labels
    assert rows[4] is None  # no text: NULL, not an empty list
    types = project.query(
        "select data_type from information_schema.columns where table_name = 'm' and column_name = 'v'"
    )
    assert types == [("VARCHAR[]",)]
    audit_matches_server(project, "classify")
    rerun_sends_nothing(project)


def test_multi_label_none_applies_is_an_empty_list_and_the_test_checks_elements(project: DbtProject) -> None:
    run(project, "{{ dbt_llm.llm_classify('body', ['shipping', 'crashed'], multi_label=true) }}")
    assert project.query("select v from m where id = 2") == [([],)]  # none applies: an empty list
    project.write(
        "models/schema.yml",
        "version: 2\nmodels:\n  - name: m\n    columns:\n      - name: v\n        data_tests:\n"
        "          - dbt_llm.llm_label_valid: {labels: ['shipping', 'crashed'], multi_label: true}\n"
        "  - name: bad\n    columns:\n      - name: v\n        data_tests:\n"
        "          - dbt_llm.llm_label_valid: {labels: ['shipping'], multi_label: true}\n",
    )
    project.write("models/bad.sql", "select ['shipping', 'crashed'] as v\n")
    project.dbt("run", "--select", "bad")
    result = project.dbt("test", ok=False)
    failed = sorted(r.node.name for r in result.result.results if r.status == "fail")
    assert len(failed) == 1 and "bad" in failed[0]


def test_bad_arguments_of_the_new_functions_fail_at_compile_time(project: DbtProject) -> None:
    project.write("seeds/t.csv", SEED)
    project.dbt("seed")
    cases = {
        "{{ dbt_llm.llm_filter('body', '') }}": "`question` must be a non-empty string",
        "{{ dbt_llm.llm_complete('body', max_tokens=0) }}": "`max_tokens` must be a whole number",
        "{{ dbt_llm.llm_classify('body', ['a'], multi_label='yes') }}": "`multi_label` must be true or false",
    }
    for sql, message in cases.items():
        project.write("models/m.sql", f"select {sql} as v from {{{{ ref('t') }}}}\n")
        result = project.dbt("run", ok=False)
        assert message in str(result.result.results[0].message), sql
    assert project.server.requests == []


def test_llm_embed_batches_texts_caches_each_and_gives_equal_vectors_for_equal_texts(project: DbtProject) -> None:
    distinct = 300
    rows = [f"{i},document number {i % distinct} about invoices" for i in range(distinct + 100)]
    project.write("seeds/t.csv", "id,body\n" + "\n".join(rows) + "\n,\n")  # and a NULL
    project.write(
        "models/m.sql", "select id, {{ dbt_llm.llm_embed('body', dimensions=16) }} as v from {{ ref('t') }}\n"
    )
    project.dbt("seed")
    project.dbt("run")
    sent = project.server.embedding_requests
    assert sum(len(r.texts) for r in sent) == distinct  # each distinct text once
    assert len(sent) <= distinct / 64  # many texts per request
    assert project.query("select count(*) from m where v is null") == [(1,)]  # the NULL row: no call
    same = project.query("select array_cosine_similarity(a.v, b.v) from m a join m b on b.id = a.id + 300 limit 1")
    assert same[0][0] == pytest.approx(1.0)  # equal texts, equal vectors
    types = project.query(
        "select data_type from information_schema.columns where table_name = 'm' and column_name = 'v'"
    )
    assert types == [("FLOAT[16]",)]
    calls, prompt, completion, cost, model = project.query(
        "select api_calls, prompt_tokens, completion_tokens, cost_usd, model from dbt_llm.llm_audit"
    )[0]
    assert (calls, prompt, completion) == (len(sent), sum(r.prompt_tokens for r in sent), 0)
    assert model == "text-embedding-3-small" and cost == pytest.approx(prompt * 0.02 / 1e6)
    project.server.reset()
    project.dbt("run")
    assert project.server.embedding_requests == []  # a rerun sends nothing


def test_llm_embed_splits_a_failed_batch_and_refuses_a_local_chat_model(project: DbtProject) -> None:
    project.write("seeds/t.csv", "id,body\n" + "\n".join(f"{i},text {i}" for i in range(8)) + "\n")
    project.write("models/m.sql", "select id, {{ dbt_llm.llm_embed('body') }} as v from {{ ref('t') }}\n")
    project.dbt("seed")
    project.server.inject("500")
    project.dbt("run")
    sizes = [len(r.texts) for r in project.server.embedding_requests]
    assert sizes[0] == 8 and sorted(sizes[1:]) == [4, 4]  # the failed request split in halves
    assert project.query("select count(*), count(v), max(len(v)) from m") == [(8, 8, 32)]

    # The embedded provider embeds with an embedding model only: a chat model is refused, naming the fix.
    project.plugin_config.update(provider="local", embedding_model="smollm2-135m")
    result = project.dbt("run", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert "'smollm2-135m' is a chat model and serves no embeddings" in message
    assert "model='nomic-embed-text-v1.5'" in message


def test_llm_filter_works_in_a_where_clause(project: DbtProject) -> None:
    project.write(
        "models/m.sql",
        "select id from {{ ref('t') }} where {{ dbt_llm.llm_filter('body', 'answer: does it say yes?') }}\n",
    )
    project.write(
        "seeds/t.csv", "id,body\n1,answer: yes\n2,answer: no\n3,answer: yes\n4,\n"
    )  # the fake reads "answer: "
    project.dbt("seed")
    project.dbt("run")
    assert project.query("select id from m order by id") == [(1,), (3,)]
    assert len(project.server.requests) == 2


def test_a_dry_run_prices_the_new_functions_and_sends_nothing(project: DbtProject) -> None:
    project.write("seeds/t.csv", SEED)
    project.write(
        "models/m.sql",
        "select id, {{ dbt_llm.llm_embed('body') }} as e, {{ dbt_llm.llm_complete('body', max_tokens=50) }} as c, "
        "{{ dbt_llm.llm_filter('body', 'Is it about billing?') }} as f from {{ ref('t') }}\n",
    )
    project.dbt("seed")
    project.dbt("run", "--vars", "{dbt_llm_dry_run: true}")
    assert project.server.requests == [] and project.server.embedding_requests == []
    estimates = dict(
        (f, (n, c)) for f, n, c in project.query("select function, est_requests, est_cost_usd from dbt_llm.llm_audit")
    )
    assert estimates["embed"][0] == 1  # the 3 distinct texts in one /embeddings request
    assert estimates["complete"][0] == 3 and estimates["filter"][0] == 3
    assert all(cost > 0 for _, cost in estimates.values())
