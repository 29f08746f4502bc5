"""The dbt-duckdb plugin: the UDFs a model's SQL calls, the llm_* tables, their migrations and writer."""
