"""`provider: local` + llm_embed: dbt, the plugin and llama.cpp's embedding mode on nomic-embed-text-v1.5.

The dbt test is skipped when xllamacpp or the model is missing (`make unit` does not pull it), except
under `make test`, which pulls it and sets DBT_LLM_REQUIRE_LOCAL_MODEL so that a missing model fails.
The compile-time checks need no model.
"""

from __future__ import annotations

import importlib.util
import math
import os

import httpx
import pytest
from conftest import DbtProject

from dbt_llm.calls.plan import plan_call
from dbt_llm.config import parse_config
from dbt_llm.errors import SpecError
from dbt_llm.local import MODELS, LocalModelError, verify
from dbt_llm.local.server import LocalServer, Slots, shared_server
from dbt_llm.pricing import PriceTable

MODEL = "nomic-embed-text-v1.5"
READY = importlib.util.find_spec("xllamacpp") is not None and verify(MODEL)
if not READY and os.environ.get("DBT_LLM_REQUIRE_LOCAL_MODEL"):
    pytest.fail(f"make test must test local embeddings: it installs xllamacpp and pulls {MODEL}", pytrace=False)
needs_model = pytest.mark.skipif(not READY, reason=f"xllamacpp or {MODEL} missing: dbt-llm pull {MODEL}")

CAT = "The cat sits on the mat."
SEED = f"id,body\n1,{CAT}\n2,A kitten is resting on a rug.\n3,Quarterly revenue grew by 12 percent.\n4,{CAT}\n5,\n"


def _plan(function: str, config: dict[str, object], **args: object) -> None:
    call = {"function": function, "where": f"llm_{function}(body)", "node_id": "model.x.m", **args}
    if function == "classify":
        call["labels"] = ["a", "b"]
    plan_call(call, "inv", parse_config(config), PriceTable({}))


def test_the_embedded_provider_embeds_with_an_embedding_model_and_chats_with_a_chat_model() -> None:
    local = {"provider": "local"}
    _plan("embed", local)  # the default embedding_model: nomic-embed-text-v1.5
    _plan("embed", local, model="/models/my-embedder.gguf")  # a file: taken as either kind
    _plan("classify", local)
    with pytest.raises(SpecError, match=r"llm_embed\(body\): provider local: 'qwen2.5-coder-1.5b' is a chat model"):
        _plan("embed", local, model="qwen2.5-coder-1.5b")
    with pytest.raises(SpecError, match=f"'{MODEL}' is an embedding model and answers no prompts"):
        _plan("classify", local, model=MODEL)
    with pytest.raises(SpecError, match="is an embedding model"):
        _plan("classify", {"provider": "local", "model": MODEL})
    with pytest.raises(SpecError, match="unknown local model 'text-embedding-3-small': use one of nomic-embed-text"):
        _plan("embed", {"provider": "local", "embedding_model": "text-embedding-3-small"})
    assert MODELS[MODEL].kind == "embedding" and MODELS[MODEL].dimensions == 768
    # Served as its kind says: llama.cpp would abort the whole process loading it to chat.
    with pytest.raises(LocalModelError, match=f"'{MODEL}' is an embedding model: it cannot be served for chat"):
        shared_server(MODEL, embedding=False)
    with pytest.raises(LocalModelError, match="'smollm2-135m' is a chat model: it cannot be served for embeddings"):
        LocalServer("smollm2-135m", embedding=True)
    assert all(m.kind == "chat" for name, m in MODELS.items() if name != MODEL)


def _cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


@needs_model
def test_local_embeddings_are_cached_audited_and_put_paraphrases_nearer(project: DbtProject) -> None:
    project.plugin_config = {"provider": "local", "local_parallel": 1}
    project.write("seeds/t.csv", SEED)
    project.write(
        "models/m.sql", "select id, {{ dbt_llm.llm_embed('body', dimensions=768) }} as v from {{ ref('t') }}\n"
    )
    project.dbt("seed")
    project.dbt("run")
    types = project.query(
        "select data_type from information_schema.columns where table_name = 'm' and column_name = 'v'"
    )
    assert types == [("FLOAT[768]",)]
    assert project.query("select id, len(v) from m order by id") == [(1, 768), (2, 768), (3, 768), (4, 768), (5, None)]
    assert project.query("select count(*) from m where v = (select v from m where id = 1)") == [(2,)]  # equal texts
    ((paraphrase, unrelated),) = project.query(
        "select array_cosine_similarity(c.v, k.v), array_cosine_similarity(c.v, q.v) "
        "from m c, m k, m q where c.id = 1 and k.id = 2 and q.id = 3"
    )
    assert paraphrase > unrelated + 0.1
    audit = project.query(
        "select function, model, rows, cache_hits, api_calls, retries, prompt_tokens > 0, completion_tokens, cost_usd "
        "from dbt_llm.llm_audit"
    )
    # 4 texts, 3 distinct, in one request (the repeat reused, the blank one never counted nor sent), at no cost.
    assert audit == [("embed", MODEL, 4, 1, 1, 0, True, 0, 0.0)]

    # What the model was sent: each text after the registry's task prefix (the same for every text).
    vector = project.query("select v from m where id = 1")[0][0]
    server = shared_server(MODEL, Slots(n_parallel=1))
    with httpx.Client(trust_env=False, timeout=60) as client:
        response = client.post(
            f"{server.base_url}/embeddings",
            headers={"Authorization": f"Bearer {server.api_key}"},
            json={"input": [MODELS[MODEL].embed_prefix + CAT, CAT]},
        )
    prefixed, bare = (item["embedding"] for item in sorted(response.json()["data"], key=lambda d: d["index"]))
    assert _cosine(vector, prefixed) > 0.9999 and _cosine(vector, bare) < 0.99

    project.dbt("run")
    rerun = project.query(
        "select sum(rows), sum(cache_hits), sum(api_calls) from dbt_llm.llm_audit "
        "where invocation_id = (select invocation_id from dbt_llm.llm_audit order by finished_at desc limit 1)"
    )
    assert rerun == [(4, 4, 0)]  # every row from the cache

    # The model gives 768 dimensions, whatever is asked: another length is refused, naming both.
    project.write(
        "models/m.sql", "select id, {{ dbt_llm.llm_embed('body', dimensions=256) }} as v from {{ ref('t') }}\n"
    )
    result = project.dbt("run", ok=False)
    message = "".join(str(r.message) for r in (result.result or []))
    assert "gives vectors of 768 dimensions, not 256: pass dimensions=768" in message


@needs_model
def test_the_example_finds_the_vendors_nearest_to_a_description(example: DbtProject) -> None:
    example.plugin_config = {"provider": "local", "local_parallel": 2}
    example.dbt("seed")
    example.dbt("build", "--select", "vendor_embeddings", "similar_vendors", "--vars", "{vendor_limit: 40}")
    assert example.query("select count(*), min(len(embedding)) from vendor_embeddings") == [(39, 768)]
    nearest = example.query("select vendor_id, similarity from similar_vendors")
    # The default search, "Network switches and cabling for the office": the Cisco switches first, of 39.
    assert len(nearest) == 5 and nearest[0][0] == 2
    assert [s for _, s in nearest] == sorted((s for _, s in nearest), reverse=True)
    searched = "Laser printer toner cartridges"
    example.dbt("run", "--select", "similar_vendors", "--vars", f"{{vendor_limit: 40, search_description: {searched}}}")
    top = example.query("select lower(description) from similar_vendors limit 2")
    assert any("toner" in d or "printer" in d for (d,) in top), top


@needs_model
def test_a_text_longer_than_the_model_reads_fails_alone_at_once(project: DbtProject) -> None:
    project.plugin_config = {"provider": "local", "local_parallel": 1, "on_error": "null"}
    words = " ".join(f"word{i}" for i in range(3000))
    project.write("seeds/t.csv", f"id,body\n1,{CAT}\n2,{words}\n3,A kitten is resting on a rug.\n")
    project.write("models/m.sql", "select id, {{ dbt_llm.llm_embed('body') }} as v from {{ ref('t') }}\n")
    project.dbt("seed")
    project.dbt("run")
    assert project.query("select id, len(v) from m order by id") == [(1, 768), (2, None), (3, 768)]
    errors = project.query("select error_kind, message, attempts from dbt_llm.llm_errors")
    assert len(errors) == 1 and errors[0][0] == "input_too_long" and "2,048 tokens" in errors[0][1]
    # Sent in the request of 3, then of 2 (the split), then alone: never the same request again (no retry).
    assert errors[0][2] == 3
