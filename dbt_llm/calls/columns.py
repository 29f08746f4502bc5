"""Which macro call of a model fills a column: the tests that judge a column (llm_up_to_date) get the
column's name, but a macro never sees the `as category` after it. The model's code says it: the call
whose `{{ ... }}` the alias follows, in the select list that holds the call."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from ..errors import SpecError

_TOKEN = re.compile(
    r"""(?P<skip>\{\#.*?\#\}|--[^\n]*|/\*.*?\*/|\{%.*?%\}|::\s*\w+(?:\s*\[\s*\])?|\.\s*\w+|\[[^\]]*\])
    |(?P<jinja>\x00\d+\x00)
    |(?P<string>'(?:[^']|'')*'|"(?:[^"]|"")*")
    |(?P<word>\w+)
    |(?P<punct>[(),])""",
    re.DOTALL | re.VERBOSE,
)
_CALL = re.compile(
    r"""\bllm_(classify|extract|filter|complete|embed)\s*\(\s*(?:'((?:[^'\\]|\\.)*)'|"((?:[^"\\]|\\.)*)")?""", re.DOTALL
)
_DIRECT = re.compile(r"""\s*(?:as\s+)?"?(\w+)""", re.IGNORECASE)
# Words after an expression that end it without naming it.
_ENDS = frozenset({"from", "where", "group", "order", "limit", "having", "union", "qualify", "window", "then"})
_ENDS |= {"else", "end", "when", "and", "or", "is", "not", "in", "like", "between", "over", "filter", "collate"}


@dataclass(frozen=True)
class CodeCall:
    function: str
    text: str | None  # the `text` argument when it is a string literal
    column: str | None  # the alias the select list gives the call's expression
    direct: bool = False  # the column is the call's value itself: `{{ ... }} as column`


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _expressions(code: str) -> tuple[str, list[str]]:
    """The code with each `{{ ... }}` replaced by a placeholder, and the expressions: a dict literal in a
    call's arguments holds `}}` too, so the end is the first `}}` outside strings and braces."""
    out: list[str] = []
    blocks: list[str] = []
    i = 0
    while (start := code.find("{{", i)) != -1:
        depth, j, quote = 0, start + 2, ""
        while j < len(code) and not (not quote and depth == 0 and code.startswith("}}", j)):
            ch = code[j]
            if quote:
                quote = "" if ch == quote and code[j - 1] != "\\" else quote
            elif ch in "'\"":
                quote = ch
            else:
                depth += (ch == "{") - (ch == "}")
            j += 1
        out.append(code[i:start] + f"\x00{len(blocks)}\x00")
        blocks.append(code[start : j + 2])
        i = j + 2
    return "".join(out) + code[i:], blocks


def code_calls(raw_code: str) -> list[CodeCall]:
    """The llm_* macro calls of a model's code, in order, each with the column it fills (if it can tell)."""
    code, blocks = _expressions(raw_code)
    tokens = [(m.lastgroup or "", m.group()) for m in _TOKEN.finditer(code) if m.lastgroup != "skip"]
    found: list[CodeCall] = []
    for i, (kind, value) in enumerate(tokens):
        call = _CALL.search(blocks[int(value.strip("\x00"))]) if kind == "jinja" else None
        if call is not None:
            literal = call.group(2) if call.group(2) is not None else call.group(3)
            text = None if literal is None else _unescape(literal)
            column = _alias(tokens, i, _levels_up(tokens, i))
            after = _DIRECT.match(code, code.index(value) + len(value))
            direct = column is not None and after is not None and after.group(1) == column
            found.append(CodeCall(call.group(1), text, column, direct))
    return found


def _levels_up(tokens: list[tuple[str, str]], at: int) -> int:
    """How many parentheses the call is inside of, counted from the select list that holds it."""
    depth = levels = 0
    for kind, value in reversed(tokens[:at]):
        if value == ")":
            depth += 1
        elif value == "(":
            levels, depth = (levels + 1, 0) if depth == 0 else (levels, depth - 1)
        elif kind == "word" and value.lower() == "select" and depth == 0:
            return levels
    return levels


def _alias(tokens: list[tuple[str, str]], at: int, levels: int) -> str | None:
    """The name after the call's expression, at the level of its select list: `as name`, or a bare name
    right after the call or a closing parenthesis."""
    depth, previous = 0, "jinja"
    for kind, value in tokens[at + 1 :]:
        if value == "(":
            depth += 1
        elif value == ")":
            depth -= 1
            if depth < -levels:
                return None  # the select list ended unnamed
        elif depth == -levels:
            word = value.lower()
            if value == "," or word in _ENDS:
                return None
            if previous == "as" and kind == "word":
                return value
            if kind == "word" and word != "as" and previous in ("jinja", ")"):
                return value
        previous = value.lower() if kind == "word" else (value if kind == "punct" else kind)
    return None


def call_of_column(raw_code: str, column: str, calls: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """The call (as _llm_prepare recorded it when dbt parsed the model, in code order) that fills `column`."""
    named = [c for c in code_calls(raw_code) if c.column is not None and c.column.lower() == column.lower()]
    if not named:
        if len(calls) == 1:
            return calls[0]
        raise SpecError(_unknown(where, column, calls))
    code = named[0]
    same = [c for c in code_calls(raw_code) if (c.function, c.text) == (code.function, code.text)]
    candidates = [c for c in calls if c.get("function") == code.function and code.text in (None, c.get("text"))]
    if not candidates:
        raise SpecError(_unknown(where, column, calls))
    return candidates[min(same.index(code), len(candidates) - 1)]


def direct_columns(raw_code: str, calls: list[dict[str, Any]]) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The columns that are a call's value itself, each with its call, and the other named columns of calls
    (a field of an extraction, an expression around the call)."""
    columns: dict[str, dict[str, Any]] = {}
    others: list[str] = []
    for code in code_calls(raw_code):
        if code.column is not None and code.direct:
            columns[code.column] = call_of_column(raw_code, code.column, calls, "dbt_llm_refresh")
        elif code.column is not None:
            others.append(code.column)
    return columns, others


def _unknown(where: str, column: str, calls: list[dict[str, Any]]) -> str:
    listed = ", ".join(f"llm_{c.get('function')}({c.get('text')!r})" for c in calls) or "none"
    return (
        f"{where}: cannot tell which llm_* call fills column `{column}`; the model's calls: {listed}. Name the "
        f"column right after the call in the model's select list, {{{{ dbt_llm.llm_classify(...) }}}} as {column}, "
        "or check the column's name."
    )
