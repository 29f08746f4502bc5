"""Answer schemas: `fields` or a JSON Schema -> a strict JSON Schema for structured
outputs, the SQL type the answer becomes, and a pydantic model that validates answers."""

from __future__ import annotations

import datetime
from collections.abc import Callable
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BaseModel, ConfigDict, StrictBool, StrictInt, create_model

from ..errors import SpecError

JsonSchema = dict[str, Any]

FIELD_TYPES = ("string", "integer", "number", "boolean", "date")
_SUPPORTED_KEYWORDS = {
    "type",
    "properties",
    "required",
    "additionalProperties",
    "items",
    "enum",
    "format",
    "description",
    "title",
    "grounded",  # ours: `false` exempts a string from the grounding check (grounding.py); never sent
}


def fields_to_schema(fields: Any, where: str) -> JsonSchema:
    """`{'city': 'string', 'size': ['S', 'M']}` -> a strict object schema, every field nullable."""
    if not isinstance(fields, dict) or not fields:
        raise SpecError(f"{where}: `fields` must be a non-empty dict of name -> type; got {fields!r}.")
    properties: dict[str, JsonSchema] = {}
    for name, kind in fields.items():
        if not isinstance(name, str) or not name.strip():
            raise SpecError(f"{where}: field name {name!r} must be a non-empty string.")
        if isinstance(kind, list) and not kind:
            raise SpecError(
                f"{where}: field `{name}` must be a type name or a non-empty list of allowed values; got []."
            )
        if isinstance(kind, list):
            if not all(isinstance(v, str) for v in kind) or len(set(kind)) != len(kind):
                raise SpecError(
                    f"{where}: field `{name}` lists allowed values {kind!r}; give distinct, non-empty strings."
                )
            properties[name] = {"type": ["string", "null"], "enum": [*kind, None]}
        elif kind == "date":
            properties[name] = {"type": ["string", "null"], "format": "date", "description": "YYYY-MM-DD"}
        elif kind in FIELD_TYPES:
            properties[name] = {"type": [kind, "null"]}
        else:
            raise SpecError(
                f"{where}: field `{name}` has unknown type {kind!r}; use one of {', '.join(FIELD_TYPES)}, "
                "a list of allowed values, or pass a full JSON Schema object."
            )
    return {"type": "object", "properties": properties, "required": list(properties), "additionalProperties": False}


def normalize_schema(schema: JsonSchema, where: str, path: str = "$") -> JsonSchema:
    """A user's JSON Schema -> the strict form structured outputs need: every property
    required, optional ones nullable, no additional properties. Unsupported keywords fail."""
    if not isinstance(schema, dict):
        raise SpecError(f"{where}: schema at {path} must be an object; got {schema!r}.")
    unknown = set(schema) - _SUPPORTED_KEYWORDS
    if unknown:
        raise SpecError(
            f"{where}: JSON Schema keyword(s) {sorted(unknown)} at {path} are not supported; "
            f"use only {sorted(_SUPPORTED_KEYWORDS)}."
        )
    types = schema.get("type")
    if types is None and "enum" in schema:
        types = _enum_type(schema["enum"], where, path)
    type_list = types if isinstance(types, list) else [types]
    nullable = "null" in type_list
    base = [t for t in type_list if t != "null"]
    if len(base) != 1 or base[0] not in ("object", "array", "string", "integer", "number", "boolean"):
        raise SpecError(
            f"{where}: `type` at {path} is {types!r}; give one of object, array, string, integer, number, "
            "boolean (optionally with null)."
        )
    kind = base[0]
    out: JsonSchema = {k: v for k, v in schema.items() if k in ("description", "title")}
    out["type"] = [kind, "null"] if nullable else kind
    if kind == "object":
        props = schema.get("properties")
        if not isinstance(props, dict) or not props:
            raise SpecError(f"{where}: object at {path} needs non-empty `properties`.")
        required = schema.get("required", [])
        if not isinstance(required, list) or any(r not in props for r in required):
            raise SpecError(f"{where}: `required` at {path} must list names from `properties`; got {required!r}.")
        normalized = {}
        for name, sub in props.items():
            child = normalize_schema(sub, where, f"{path}.{name}")
            if path == "$" or name not in required:
                # Missing information must come back as null, never invented.
                child = _make_nullable(child)
            normalized[name] = child
        out.update(properties=normalized, required=list(normalized), additionalProperties=False)
    elif kind == "array":
        out["items"] = normalize_schema(schema.get("items", {"type": "string"}), where, f"{path}[]")
    elif "enum" in schema:
        enum = schema["enum"]
        if not isinstance(enum, list) or not enum or len({repr(v) for v in enum}) != len(enum):
            raise SpecError(f"{where}: `enum` at {path} must be a non-empty list of distinct values; got {enum!r}.")
        out["enum"] = enum
    if "grounded" in schema:
        if kind != "string" or not isinstance(schema["grounded"], bool):
            raise SpecError(
                f"{where}: `grounded` at {path} must be true or false on a string; got {schema['grounded']!r}."
            )
        out["grounded"] = schema["grounded"]
    if schema.get("format") is not None:
        if kind != "string" or schema["format"] != "date":
            raise SpecError(
                f"{where}: `format` {schema['format']!r} at {path} is not supported; only `date` on strings."
            )
        out["format"] = "date"
    return out


def wire_schema(schema: JsonSchema) -> JsonSchema:
    """The schema as sent to the provider: without our own `grounded` keyword."""
    out: JsonSchema = {k: v for k, v in schema.items() if k != "grounded"}
    if "properties" in out:
        out["properties"] = {name: wire_schema(sub) for name, sub in out["properties"].items()}
    if "items" in out:
        out["items"] = wire_schema(out["items"])
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):  # before int: bool is an int in Python, not in JSON
        return "boolean"
    if isinstance(value, int):
        return "integer"
    return {float: "number", str: "string"}.get(type(value), type(value).__name__)


def _enum_type(enum: Any, where: str, path: str) -> str | list[str]:
    """The `type` of an `enum` given without one: the one type all its values share."""
    if not isinstance(enum, list) or not enum:
        raise SpecError(f"{where}: `enum` at {path} must be a non-empty list of distinct values; got {enum!r}.")
    kinds = {_json_type(v) for v in enum if v is not None}
    if kinds == {"integer", "number"}:
        kinds = {"number"}
    if len(kinds) != 1 or not kinds <= {"string", "integer", "number", "boolean"}:
        raise SpecError(
            f"{where}: `enum` at {path} has no `type`, and its values {enum!r} are not all strings, all integers, "
            "all numbers or all booleans; give values of one of those types, or a `type`."
        )
    kind = kinds.pop()
    return [kind, "null"] if None in enum else kind


def _make_nullable(schema: JsonSchema) -> JsonSchema:
    if isinstance(schema["type"], list):
        return schema
    out = {**schema, "type": [schema["type"], "null"]}
    if "enum" in out and None not in out["enum"]:
        out["enum"] = [*out["enum"], None]
    return out


def _base_type(schema: JsonSchema) -> str:
    types = schema["type"]
    return str(types[0]) if isinstance(types, list) else str(types)


def sql_structure(schema: JsonSchema) -> Any:
    """The DuckDB `json_transform` structure for a normalized schema."""
    kind = _base_type(schema)
    if kind == "object":
        return {name: sql_structure(sub) for name, sub in schema["properties"].items()}
    if kind == "array":
        return [sql_structure(schema["items"])]
    if kind == "string":
        return "DATE" if schema.get("format") == "date" else "VARCHAR"
    return {"integer": "BIGINT", "number": "DOUBLE", "boolean": "BOOLEAN"}[kind]


_STRICT = ConfigDict(extra="forbid", strict=True)
_SCALARS: dict[str, Any] = {"integer": StrictInt, "number": float, "boolean": StrictBool}


def _one_of(values: tuple[Any, ...]) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if value not in values:
            raise ValueError(f"{value!r} is not one of {list(values)!r}")
        return value

    return check


def answer_model(schema: JsonSchema, name: str = "Answer") -> type[BaseModel]:
    """A pydantic model that accepts exactly the answers the normalized schema allows."""
    fields: dict[str, Any] = {}
    for prop, sub in schema["properties"].items():
        fields[prop] = (_python_type(sub, f"{name}_{prop}"), ...)
    return create_model(name, __config__=_STRICT, **fields)


def _python_type(schema: JsonSchema, name: str) -> Any:
    kind = _base_type(schema)
    nullable = isinstance(schema["type"], list)
    py: Any
    if kind == "object":
        py = answer_model(schema, name)
    elif kind == "array":
        item = _python_type(schema["items"], name + "_item")
        py = list[item]  # type: ignore[valid-type]
    elif "enum" in schema:
        values = tuple(v for v in schema["enum"] if v is not None)
        # A Literal compares with ==, which takes `true` for 1 and 1 for `true`: check the type first.
        py = Literal[values] if kind == "string" else Annotated[_SCALARS[kind], AfterValidator(_one_of(values))]
    elif kind == "string":
        py = datetime.date if schema.get("format") == "date" else str
    else:
        py = _SCALARS[kind]
    return Optional[py] if nullable else py  # noqa: UP045 - built at run time
