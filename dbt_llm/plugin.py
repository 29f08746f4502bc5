"""`- module: dbt_llm.plugin` in profiles.yml: the dbt-duckdb plugin lives in dbt_llm.duckdb.plugin."""

from .duckdb.plugin import Plugin

__all__ = ["Plugin"]
