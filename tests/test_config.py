"""Config is parsed once; invalid config fails when dbt connects, naming the key and the fix."""

from __future__ import annotations

import pytest
from conftest import DbtProject

from dbt_llm import ConfigError, parse_config


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"modle": "gpt-4o"}, "`modle` is not a known key"),
        ({"provider": "anthropic"}, "`provider` is 'anthropic'"),
        ({"max_concurrency": 0}, "`max_concurrency` is 0"),
        ({"max_concurrency": "many"}, "`max_concurrency` is 'many'"),
        ({"on_error": "skip"}, "`on_error` is 'skip'"),
        ({"base_url": "api.openai.com"}, "`base_url`"),
        ({"api_key_env": "sk-live-abc123"}, "Put the NAME of the variable here"),
        ({"prices": {"m": {"input": 1}}}, "`prices.m`"),
        ({"prices": {"m": {"input": -1, "output": 1}}}, "`prices.m.input`"),
        ({"max_cost_usd": -5}, "`max_cost_usd` is -5"),
        ({"schema": "my-schema"}, "`schema`"),
    ],
)
def test_invalid_config_names_the_key(config: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert expected in str(info.value)
    assert "sk-live-abc123" not in str(info.value)


def test_duckdb_settings_merged_by_dbt_duckdb_are_not_ours() -> None:
    config = parse_config({"model": "gpt-4o", "memory_limit": "2GB"}, {"memory_limit": "2GB"})
    assert config.model == "gpt-4o"
    with pytest.raises(ConfigError, match="`memory_limit` is not a known key"):
        parse_config({"memory_limit": "3GB"}, {"memory_limit": "2GB"})


def test_numbers_from_env_var_strings_are_accepted() -> None:
    config = parse_config({"max_concurrency": "8", "max_cost_usd": "2.5", "request_timeout": "30"})
    assert (config.max_concurrency, config.max_cost_usd, config.request_timeout) == (8, 2.5, 30.0)


def test_unknown_key_fails_the_dbt_connection(project: DbtProject) -> None:
    project.plugin_config["max_concurency"] = 4
    project.settings = {"threads": 2}  # a DuckDB setting, merged into plugin config by dbt-duckdb
    project.write("models/one.sql", "select 1 as x\n")
    result = project.dbt("run", ok=False)
    message = str(result.exception) + "".join(str(r.message) for r in (result.result or []))
    assert "`max_concurency` is not a known key" in message


def test_duckdb_settings_do_not_break_the_plugin(project: DbtProject) -> None:
    project.settings = {"threads": 2}
    project.write("seeds/t.csv", "id,body\n1,a bug\n")
    project.write(
        "models/one.sql", "select {{ dbt_llm.llm_classify('body', ['bug', 'other']) }} as l from {{ ref('t') }}\n"
    )
    project.dbt("seed")
    project.dbt("run")
    assert project.query("select l from one") == [("bug",)]


def test_local_provider_takes_a_registry_name_or_a_gguf_path() -> None:
    assert parse_config({"provider": "local"}).model == "qwen2.5-0.5b"
    assert parse_config({"provider": "local", "model_path": "/models/my.gguf"}).model == "/models/my.gguf"
    with pytest.raises(ConfigError, match="`model_path` is set"):
        parse_config({"provider": "openai", "model_path": "/models/my.gguf"})


def test_macros_without_the_plugin_say_how_to_add_it(project: DbtProject) -> None:
    project.write("seeds/t.csv", "id,body\n1,a bug\n")
    project.write(
        "models/one.sql", "select {{ dbt_llm.llm_classify('body', ['bug', 'other']) }} as l from {{ ref('t') }}\n"
    )
    project.with_plugin = False
    result = project.dbt("run", ok=False)
    message = "".join(str(r.message) for r in (result.result or [])) + str(result.exception)
    assert "the dbt_llm plugin is not loaded" in message and "module: dbt_llm.plugin" in message
