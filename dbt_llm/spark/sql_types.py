"""The Spark SQL type of an answer, for `from_json` (schemas.sql_structure is DuckDB's)."""

from __future__ import annotations

from ..functions.schemas import JsonSchema

_SCALARS = {"integer": "bigint", "number": "double", "boolean": "boolean"}


def spark_type(schema: JsonSchema) -> str:
    types = schema["type"]
    kind = str(types[0]) if isinstance(types, list) else str(types)
    if kind == "object":
        fields = ", ".join(
            f"`{name.replace('`', '``')}`: {spark_type(sub)}" for name, sub in schema["properties"].items()
        )
        return f"struct<{fields}>"
    if kind == "array":
        return f"array<{spark_type(schema['items'])}>"
    if kind == "string":
        return "date" if schema.get("format") == "date" else "string"
    return _SCALARS[kind]
