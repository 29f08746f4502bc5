"""Config is parsed once; invalid config fails when dbt connects, naming the key and the fix."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import DbtProject
from pydantic import TypeAdapter

from dbt_llm import ConfigError, LlmConfig, parse_config
from dbt_llm.local.registry import DEFAULT_EMBEDDING_MODEL
from dbt_llm.local.registry import DEFAULT_MODEL as LOCAL_DEFAULT_MODEL
from dbt_llm.pricing import Price

SCHEMA = TypeAdapter(LlmConfig).json_schema()
KEYS = sorted(SCHEMA["properties"])


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        ({"modle": "gpt-4o"}, "`modle` is not a known key"),
        ({"provider": "gemini"}, "`provider` is 'gemini'. Use `openai` or `azure` or `anthropic` or `local`."),
        ({"max_concurrency": 0}, "`max_concurrency` is 0. Set it to an integer >= 1."),
        ({"max_concurrency": "many"}, "`max_concurrency` is 'many'"),
        ({"max_concurrency": "8.0"}, "`max_concurrency` is '8.0'"),
        ({"on_error": "skip"}, "`on_error` is 'skip'. Use `fail` or `null`."),
        ({"on_long_input": "cut"}, "`on_long_input` is 'cut'. Use `truncate` or `fail`."),
        ({"base_url": "api.openai.com"}, "`base_url` is 'api.openai.com'. Use an http(s) URL"),
        ({"api_key_env": "sk-live-abc123"}, "Put the NAME of the variable here"),
        ({"api_key_env": "  sk-live-abc123 "}, "`api_key_env` does not look like the name of an environment variable"),
        ({"model": "  "}, "`model` is '  '. Set it to a non-empty string."),
        ({"model": 4}, "`model` is 4. Set it to a non-empty string."),
        (
            {"prices": {"m": {"input": 1}}},
            "`prices.m` is {'input': 1}. Give `input` and `output` (optionally `cached_input`",
        ),
        ({"prices": {"m": {"input": 1, "output": 1, "cached": 1}}}, "`prices.m` is {'input': 1, 'output': 1, 'cac"),
        ({"prices": {"m": 5}}, "`prices.m` is 5"),
        ({"prices": ["m"]}, "`prices` is ['m']. Use a mapping"),
        ({"prices": {"m": {"input": -1, "output": 1}}}, "`prices.m.input` is -1. Set it to a number >= 0."),
        ({"prices": {"m": {"input": 1, "output": True}}}, "`prices.m.output` is True"),
        ({"max_cost_usd": -5}, "`max_cost_usd` is -5"),
        ({"schema": "my-schema"}, "`schema` is 'my-schema'. Use letters, digits and underscores only."),
        ({"max_attempts": None}, "`max_attempts` is null (empty in YAML)"),
        ({"model": None}, "`model` is null"),
        ({"on_long_input": None}, "`on_long_input` is null"),
        ({"provider": "local", "model_path": " "}, "`model_path` is ' '"),
    ],
)
def test_invalid_config_names_the_key(config: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(config)
    assert expected in str(info.value)
    assert "sk-live-abc123" not in str(info.value)


def test_yaml_null_means_something_only_where_documented() -> None:
    config = parse_config(
        yaml.safe_load("on_error: null\nmax_cost_usd: null\nprices:\nrequests_per_minute: ~\nlocal_threads: null\n")
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
    assert parse_config({"schema": "s"}, {"schema": "s"}).schema == "s"  # ours even when DuckDB has it too
    with pytest.raises(ConfigError, match="`memory_limit` is not a known key"):
        parse_config({"memory_limit": "3GB"}, {"memory_limit": "2GB"})


def test_numbers_from_env_var_strings_are_accepted() -> None:
    config = parse_config({"max_concurrency": "8", "max_cost_usd": "2.5", "request_timeout": "30"})
    assert (config.max_concurrency, config.max_cost_usd, config.request_timeout) == (8, 2.5, 30.0)


def test_base_url_and_prices_are_normalised() -> None:
    profile = "base_url: http://localhost:8080/v1/\nprices: {m: {input: '0.15', output: 2}, 4: {input: 1, output: 0}}\n"
    config = parse_config(yaml.safe_load(profile))
    assert config.base_url == "http://localhost:8080/v1"
    assert config.prices == {"m": Price(0.15, 2.0), "4": Price(1.0, 0.0)}


# The lowest accepted value of each numeric key, and a value just below it.
BOUNDS = {
    "max_concurrency": (1, 0, "an integer >= 1"),
    "max_cost_usd": (0, -0.01, "a number >= 0"),
    "temperature": (0, -0.1, "a number >= 0"),
    "max_attempts": (1, 0, "an integer >= 1"),
    "request_timeout": (0.1, 0.09, "a number >= 0.1"),
    "row_timeout": (0.1, 0, "a number >= 0.1"),
    "max_input_chars": (1, 0, "an integer >= 1"),
    "requests_per_minute": (1, 0.5, "a number >= 1"),
    "progress_interval": (0.1, 0.05, "a number >= 0.1"),
    "local_threads": (1, 0, "an integer >= 1"),
    "local_parallel": (1, 0, "an integer >= 1"),
    "tokens_per_minute": (1, 0, "a number >= 1"),
    "batch_timeout": (1, 0.5, "a number >= 1"),
    "batch_poll_interval": (0.01, 0, "a number >= 0.01"),
    "rows_per_request": (1, 0, "an integer in [1, 64]"),
    "recheck": (0, -1, "an integer >= 0"),
    "cascade_target": (0.01, 0, "a number in [0.01, 1]"),
}


@pytest.mark.parametrize(
    ("key", "above", "kind"),
    [("rows_per_request", 65, "an integer in [1, 64]"), ("cascade_target", 1.5, "a number in [0.01, 1]")],
)
def test_keys_with_a_maximum_refuse_values_above_it_naming_the_range(key: str, above: float, kind: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({key: above})
    assert f"`{key}` is {above!r}. Set it to {kind}." in str(info.value)


def test_every_numeric_key_has_its_bound_checked() -> None:
    def json_types(prop: dict[str, Any]) -> set[str]:  # `anyOf` for the keys that also take null
        return {option["type"] for option in [prop, *prop.get("anyOf", [])] if "type" in option}

    numeric = [key for key in KEYS if json_types(SCHEMA["properties"][key]) & {"integer", "number"}]
    assert numeric == sorted(BOUNDS)


@pytest.mark.parametrize("key", sorted(BOUNDS))
def test_numeric_keys_refuse_out_of_range_values_and_booleans(key: str) -> None:
    lowest, below, kind = BOUNDS[key]
    assert getattr(parse_config({key: lowest}), key) == lowest
    assert getattr(parse_config({key: str(lowest)}), key) == lowest  # as env_var() renders it
    refused = [below, str(below), True, "many"] + ([2.5] if kind.startswith("an integer") else [])
    for value in refused:
        with pytest.raises(ConfigError) as info:
            parse_config({key: value})
        assert f"`{key}` is {value!r}. Set it to {kind}." in str(info.value)


def test_logprobs_is_true_or_false() -> None:
    assert parse_config({}).logprobs is True
    assert parse_config({"logprobs": "false"}).logprobs is False  # as env_var() renders it
    for value in ("yes", 1):
        with pytest.raises(ConfigError) as info:
            parse_config({"logprobs": value})
        assert f"`logprobs` is {value!r}. Use true or false." in str(info.value)


def test_every_key_has_a_description() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"no_such_key": 1})
    assert str(info.value).endswith(f"known keys: {', '.join(KEYS)}.")
    for key in KEYS:
        assert len(str(SCHEMA["properties"][key].get("description", ""))) > 10, key


def test_defaults_are_written_once() -> None:
    defaults = parse_config({})
    assert defaults == LlmConfig()
    for key in KEYS:  # the schema's defaults are the field defaults (`prices` has a factory, so none: {})
        assert SCHEMA["properties"][key].get("default", {}) == getattr(defaults, key), key


# What YAML null means where it means something; for any other key it fails naming the default.
NULL_MEANS: dict[str, object] = {
    "on_error": "null",
    "prices": {},
    "max_cost_usd": None,
    "requests_per_minute": None,
    "tokens_per_minute": None,
    "local_threads": None,
    "model_path": None,
    "headers": {},
}


@pytest.mark.parametrize("key", KEYS)
def test_yaml_null_is_a_value_or_names_the_default(key: str) -> None:
    if key in NULL_MEANS:
        assert getattr(parse_config({key: None}), key) == NULL_MEANS[key]
        return
    with pytest.raises(ConfigError) as info:
        parse_config({key: None})
    default = getattr(parse_config({}), key)
    assert (
        f"`{key}` is null (empty in YAML). Give it a value, or remove the key to get the default, {default!r}."
        in str(info.value)
    )


def test_an_invalid_config_gets_one_line_of_ours_not_a_pydantic_dump() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({"max_concurrency": 0, "api_key_env": "sk-live-abc123", "prices": {"m": 1}, "on_error": 3})
    message = str(info.value)
    assert message.startswith("dbt_llm.plugin config: `") and "\n" not in message
    assert "pydantic" not in message and "validation error" not in message and "sk-live-abc123" not in message
    assert info.value.__cause__ is None and info.value.__context__ is None  # no chained traceback either


def test_config_is_immutable() -> None:
    config = parse_config({})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.model = "gpt-4o"  # type: ignore[misc]


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
    # The default mirrors the registry's (what `dbt-llm pull` fetches without a name).
    assert parse_config({"provider": "local"}).model == LOCAL_DEFAULT_MODEL == "qwen2.5-coder-1.5b"
    assert parse_config({"provider": "local", "model_path": "/models/my.gguf"}).model == "/models/my.gguf"
    assert parse_config({"provider": "local", "model": "gpt-4o-mini"}).model == "gpt-4o-mini"
    # llm_embed's model has a local default too, an embedding model; a profile's own choice stays.
    assert parse_config({"provider": "local"}).embedding_model == DEFAULT_EMBEDDING_MODEL == "nomic-embed-text-v1.5"
    assert parse_config({"provider": "local", "model_path": "/m/my.gguf"}).embedding_model == DEFAULT_EMBEDDING_MODEL
    assert parse_config({"provider": "local", "embedding_model": "/m/e.gguf"}).embedding_model == "/m/e.gguf"
    assert parse_config({}).embedding_model == "text-embedding-3-small"
    with pytest.raises(ConfigError, match="`model_path` is set"):
        parse_config({"provider": "openai", "model_path": "/models/my.gguf"})
    with pytest.raises(ConfigError, match=r"`model_path` is set\. Use it only with provider: local, instead of"):
        parse_config({"provider": "local", "model_path": "/models/my.gguf", "model": "qwen2.5-coder-0.5b"})


def test_macros_without_the_plugin_say_how_to_add_it(project: DbtProject) -> None:
    project.write("seeds/t.csv", "id,body\n1,a bug\n")
    project.write(
        "models/one.sql", "select {{ dbt_llm.llm_classify('body', ['bug', 'other']) }} as l from {{ ref('t') }}\n"
    )
    project.with_plugin = False
    result = project.dbt("run", ok=False)
    message = "".join(str(r.message) for r in (result.result or [])) + str(result.exception)
    assert "the dbt_llm plugin is not loaded" in message and "module: dbt_llm.plugin" in message


def test_prices_take_cached_and_batch_prices() -> None:
    config = parse_config({"prices": {"m": {"input": 1, "output": 4, "cached_input": 0.25, "batch_output": 1.5}}})
    price = config.prices["m"]
    # 1M prompt tokens of which half cached, plus 1M completion tokens.
    assert price.cost(1_000_000, 1_000_000, cached_tokens=500_000) == 0.5 + 0.125 + 4
    batch = price.for_batch()  # half the list price unless given
    assert (batch.input, batch.output, batch.cached_input) == (0.5, 1.5, 0.125)
    with pytest.raises(ConfigError, match=r"`prices.m.batch_input` is -1"):
        parse_config({"prices": {"m": {"input": 1, "output": 4, "batch_input": -1}}})


def test_azure_needs_its_resource_endpoint_and_reads_its_own_key_variable() -> None:
    with pytest.raises(ConfigError, match=r"`base_url` is not set, and provider azure needs it\. Set it to your "):
        parse_config({"provider": "azure"})  # the OpenAI default endpoint means nothing to Azure
    with pytest.raises(ConfigError, match=r"`base_url` has a path with /openai in it\. With provider azure give only"):
        parse_config({"provider": "azure", "base_url": "https://r.openai.azure.com/openai/deployments/gpt-4o"})
    config = parse_config({"provider": "azure", "base_url": "https://r.openai.azure.com/"})
    assert (config.base_url, config.api_key_env, config.api_version) == (
        "https://r.openai.azure.com",
        "AZURE_OPENAI_API_KEY",
        "2024-10-21",
    )
    own = parse_config({"provider": "azure", "base_url": "https://r.openai.azure.com", "api_key_env": "MY_KEY"})
    assert own.api_key_env == "MY_KEY"
    assert parse_config({}).api_key_env == "OPENAI_API_KEY"  # other providers keep theirs


@pytest.mark.parametrize("version", ["2024-10-21", "2025-04-01-preview"])
def test_api_version_takes_azures_dated_versions(version: str) -> None:
    assert parse_config({"api_version": version}).api_version == version


@pytest.mark.parametrize("version", ["v1", "2024-10", "latest"])
def test_api_version_refuses_anything_else(version: str) -> None:
    with pytest.raises(ConfigError, match=f"`api_version` is '{version}'. Use an Azure OpenAI api-version such as"):
        parse_config({"api_version": version})
