"""Config is parsed once; invalid config fails when dbt connects, naming the key and the fix."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
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
        ({"max_attempts": None}, "`max_attempts` is null (empty in YAML)"),
        ({"model": None}, "`model` is null"),
        ({"on_long_input": None}, "`on_long_input` is null"),
    ],
)
def test_invalid_config_names_the_key(config: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert expected in str(info.value)
    assert "sk-live-abc123" not in str(info.value)


def test_yaml_null_means_something_only_where_documented() -> None:
    config = parse_config(
        yaml.safe_load(
            "on_error: null\nmax_cost_usd: null\nprices:\nrequests_per_minute: ~\nlocal_threads: null\n"
        )
    )
    assert config.on_error == "null"  # `on_error: null` as the README writes it, unquoted
    assert (config.max_cost_usd, config.prices, config.requests_per_minute, config.local_threads) == (
        None,
        {},
        None,
        None,
    )
    assert parse_config({"on_error": "null"}).on_error == "null"
    with pytest.raises(ConfigError, match=r"`request_timeout` is null .* the default, 60\.0"):
        parse_config(yaml.safe_load("request_timeout:\n"))


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


def test_unknown_key_prints_the_message_without_a_traceback(project: DbtProject) -> None:
    project.plugin_config["modle"] = "gpt-4o"
    project.write("models/one.sql", "select 1 as x\n")
    project.write_profiles()
    dbt = Path(sys.executable).parent / "dbt"
    out = subprocess.run(
        [str(dbt), "run", "--project-dir", str(project.root), "--profiles-dir", str(project.root)],
        capture_output=True,
        text=True,
        env={**os.environ, "DBT_SEND_ANONYMOUS_USAGE_STATS": "false"},
        check=False,
    )
    output = out.stdout + out.stderr
    assert out.returncode != 0
    assert "`modle` is not a known key. Remove it or fix its spelling" in output
    assert "Traceback" not in output
    assert output.count("`modle`") == 1 and len(output.splitlines()) < 20, output


def test_unquoted_on_error_null_keeps_going_in_a_real_run(project: DbtProject) -> None:
    project.plugin_config.update(max_attempts=1, on_error=None)
    project.write_profiles()
    assert "on_error: null\n" in (project.root / "profiles.yml").read_text()  # unquoted, as YAML null
    project.write("seeds/t.csv", "id,body\n1,ticket 1: billing\n2,ticket 2: bug\n3,ticket 3: bug\n")
    project.write(
        "models/one.sql",
        "select id, {{ dbt_llm.llm_classify('body', ['billing', 'bug']) }} as l from {{ ref('t') }}\n",
    )
    project.dbt("seed")
    project.server.inject("invalid", times=1, match="ticket 2:")
    project.dbt("run")
    assert project.query("select id, l from one order by id") == [(1, "billing"), (2, None), (3, "bug")]
    assert project.query("select error_kind from dbt_llm.llm_errors") == [("invalid_answer",)]


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
