"""`provider: local` end to end: dbt, the plugin, the embedded llama.cpp server and a real (tiny) model.

Uses smollm2-135m (98 MB): it proves the plumbing (constrained answers, usage, cost 0, cache), not
quality. Skipped when xllamacpp or the model is missing (`make unit` does not pull it), except under
`make test`, which installs both and sets DBT_LLM_REQUIRE_LOCAL_MODEL so that a missing model fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from pathlib import Path

import pytest
from conftest import DbtProject

from dbt_llm.local import verify
from dbt_llm.local.pull import model_path
from dbt_llm.local.server import served_models

MODEL = "smollm2-135m"
READY = importlib.util.find_spec("xllamacpp") is not None and verify(MODEL)
if not READY and os.environ.get("DBT_LLM_REQUIRE_LOCAL_MODEL"):
    pytest.fail(f"make test must test the local provider: it installs xllamacpp and pulls {MODEL}", pytrace=False)
pytestmark = pytest.mark.skipif(not READY, reason=f"xllamacpp or {MODEL} missing: dbt-llm pull {MODEL}")

LABELS = ["software", "hardware", "services", "other"]


def test_local_model_answers_within_the_schema_at_zero_cost(project: DbtProject) -> None:
    project.plugin_config = {"provider": "local", "model": MODEL, "local_parallel": 2, "max_cost_usd": 0.01}
    project.write(
        "seeds/v.csv",
        "id,description,address\n"
        '1,Annual licence for CRM platform,"221B Baker Street, London NW1 6XE, UK"\n'
        '2,Dell laptops x25,"Hauptstraße 5, 10115 Berlin, Germany"\n'
        "3,Quarterly external audit,\n"
        "4,Annual licence for CRM platform,\n",
    )
    project.write(
        "models/m.sql",
        f"select id, {{{{ dbt_llm.llm_classify('description', {LABELS}) }}}} as category, "
        "{{ dbt_llm.llm_extract('address', {'city': 'string', 'country': 'string'}) }} as addr from {{ ref('v') }}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    rows = project.query("select id, category, addr from m order by id")
    assert all(category in LABELS for _, category, _ in rows)
    assert [addr is None for _, _, addr in rows] == [False, False, True, True]
    audit = project.query(
        "select function, model, rows, api_calls - retries, prompt_tokens > 0, completion_tokens > 0, cost_usd "
        "from dbt_llm.llm_audit order by function"
    )
    assert audit == [
        ("classify", MODEL, 4, 3, True, True, 0.0),  # a repeated description is sent once
        ("extract", MODEL, 2, 2, True, True, 0.0),
    ]
    project.dbt("run")
    assert project.query("select sum(api_calls) from dbt_llm.llm_audit")[0][0] == 5  # the rerun is cached


def test_local_model_gives_each_answer_a_confidence(project: DbtProject) -> None:
    # llama.cpp's server returns logprobs on chat completions, as OpenAI does: the embedded model has them too.
    project.plugin_config = {"provider": "local", "model": MODEL, "local_parallel": 2}
    project.write("seeds/v.csv", "id,description\n1,Annual licence for CRM platform\n2,Dell laptops x25\n")
    project.write(
        "models/m.sql",
        f"select id, {{{{ dbt_llm.llm_classify('description', {LABELS}, with_confidence=true) }}}} as c, "
        "{{ dbt_llm.llm_filter('description', 'Is it a physical product?', with_confidence=true) }} as f "
        "from {{ ref('v') }}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    rows = project.query("select c.label, c.confidence, f.value, f.confidence from m order by id")
    for label, label_confidence, value, value_confidence in rows:
        assert label in LABELS and isinstance(value, bool)
        assert 0.0 < label_confidence <= 1.0 and 0.0 < value_confidence <= 1.0
    assert project.query("select count(*) from dbt_llm.llm_cache where confidence is null")[0][0] == 0


def _second_model(tmp_path: Path, size: int | None = None) -> Path:
    """Another model file: a copy of the test model (all of it, or its first `size` bytes: a broken one)."""
    source = model_path(MODEL)
    target = tmp_path / ("second.gguf" if size is None else "broken.gguf")
    with source.open("rb") as src, target.open("wb") as dst:
        shutil.copyfileobj(src, dst) if size is None else dst.write(src.read(size))
    return target


def test_a_cascade_asks_two_embedded_models_each_on_a_server_of_its_own(project: DbtProject, tmp_path: Path) -> None:
    second = _second_model(tmp_path)
    project.plugin_config = {"provider": "local", "model": MODEL, "local_parallel": 2}
    project.write("seeds/v.csv", "id,description\n1,Annual licence for CRM platform\n2,Dell laptops x25\n3,Audit\n")
    project.write(
        "models/m.sql",
        f"select id, {{{{ dbt_llm.llm_classify('description', {LABELS}, escalate_to='{second}', "
        "escalate_below=1.0) }} as c from {{ ref('v') }}\n",
    )
    project.dbt("seed")
    project.dbt("run")
    assert {model_path(MODEL), second.resolve()} <= set(served_models())
    assert all(c in LABELS for (c,) in project.query("select c from m"))
    audit = dict(project.query("select model, rows from dbt_llm.llm_audit where function = 'classify'"))
    below = project.query("select count(*) from dbt_llm.llm_cache where model = ? and confidence < 1.0", [MODEL])[0][0]
    assert audit[MODEL] == 3 and audit.get(str(second), 0) == below  # each model's rows: those it answered


def test_the_escalated_rows_reach_escalate_to_s_own_model(project: DbtProject, tmp_path: Path) -> None:
    # A model file llama.cpp cannot load stops the run when escalate_to is first asked, naming that file,
    # and the first model's answers stay cached: the escalated rows were asked of a model of their own.
    broken = _second_model(tmp_path, size=1_000_000)
    project.plugin_config = {"provider": "local", "model": MODEL, "local_parallel": 2}
    project.write("seeds/v.csv", "id,description\n1,Annual licence for CRM platform\n2,Dell laptops x25\n")
    project.write(
        "models/m.sql",
        f"select id, {{{{ dbt_llm.llm_classify('description', {LABELS}, escalate_to='{broken}', "
        "escalate_below=1.0) }} as c from {{ ref('v') }}\n",
    )
    project.dbt("seed")
    result = project.dbt("run", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert f"provider local, model '{broken}': llama.cpp could not load" in message
    assert project.query("select model, count(*) from dbt_llm.llm_cache group by model") == [(MODEL, 2)]


def test_a_model_the_embedded_provider_cannot_serve_fails_at_compile_time(project: DbtProject) -> None:
    project.plugin_config = {"provider": "local", "model": MODEL}
    project.write("seeds/v.csv", "id,description\n1,Dell laptops x25\n")
    project.write(
        "models/m.sql",
        f"select {{{{ dbt_llm.llm_classify('description', {LABELS}, escalate_to='gpt-4o', escalate_below=0.8) }}}}"
        " as c from {{ ref('v') }}\n",
    )
    project.dbt("seed")
    result = project.dbt("run", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert "unknown local model 'gpt-4o'" in message and "qwen2.5-coder-1.5b" in message
    assert project.query("select count(*) from dbt_llm.llm_calls")[0][0] == 0
