"""Who a model's spend belongs to, as dbt has it: the owner of the model's group (else `meta.owner`),
the group, the tags and the meta, from what the macro passes of dbt's `model` and `config`."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Attribution:
    owner: str | None = None
    group_name: str | None = None
    tags: tuple[str, ...] = ()
    # The model's meta as JSON, without dbt-llm's own keys; NULL only in rows written before attribution.
    meta: str | None = None


def _person(owner: Any) -> str | None:
    """A group owner as dbt has it ({name, email}, email a string or a list): "Name <email>", or either alone."""
    if not isinstance(owner, dict):
        return str(owner) if isinstance(owner, str) and owner else None
    name = str(owner.get("name") or "").strip()
    email = owner.get("email")
    emails = ", ".join(str(e) for e in email if e) if isinstance(email, list) else str(email or "").strip()
    if name and emails:
        return f"{name} <{emails}>"
    return name or emails or None


def _own_meta(meta: Any) -> dict[str, Any]:
    """The user's meta: dbt-llm's settings (`dbt_llm`) and the calls the macros note there
    (`dbt_llm_call_*`) are not theirs."""
    if not isinstance(meta, dict):
        return {}
    return {k: v for k, v in meta.items() if k != "dbt_llm" and not str(k).startswith("dbt_llm_call_")}


def attribution_of(values: Any) -> Attribution:
    """`values`: the macro's {group, group_owner, tags, meta}. A model without tags or meta gets [] and {}
    (known to be empty); without an owner, NULL."""
    if not isinstance(values, dict):
        return Attribution()
    meta = _own_meta(values.get("meta"))
    group = values.get("group")
    owner = _person(values.get("group_owner")) if group else None
    if owner is None:
        owner = _person(meta.get("owner"))
    tags = values.get("tags")
    return Attribution(
        owner=owner,
        group_name=str(group) if group else None,
        tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
        meta=json.dumps(meta, sort_keys=True, default=str),
    )
