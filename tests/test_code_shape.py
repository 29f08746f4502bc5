"""The size limits of docs/architecture.md, checked on every module of dbt_llm/: a unit past them is
doing several jobs. A failure names the unit and its size."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "dbt_llm"
MAX_FUNCTION_LINES = 60
MAX_PARAMETERS = 7  # self and cls not counted
MAX_CLASS_LINES = 250
MAX_MODULE_LINES = 400
MAX_TOP_MODULES = 10


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def _parameters(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    a = node.args
    names = [p.arg for p in [*a.posonlyargs, *a.args, *a.kwonlyargs]]
    names += [p.arg for p in (a.vararg, a.kwarg) if p is not None]
    return sum(name not in ("self", "cls") for name in names)


def _too_big() -> list[str]:
    found: list[str] = []
    for path in _modules():
        where = path.relative_to(PACKAGE.parent)
        source = path.read_text()
        lines = source.count("\n") + 1
        if lines > MAX_MODULE_LINES:
            found.append(f"{where}: {lines} lines (at most {MAX_MODULE_LINES})")
        for node in ast.walk(ast.parse(source)):
            size = (node.end_lineno or node.lineno) - node.lineno + 1 if hasattr(node, "lineno") else 0
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if size > MAX_FUNCTION_LINES:
                    found.append(f"{where}:{node.lineno} {node.name}(): {size} lines (at most {MAX_FUNCTION_LINES})")
                if _parameters(node) > MAX_PARAMETERS:
                    found.append(f"{where}:{node.lineno} {node.name}(): {_parameters(node)} parameters")
            elif isinstance(node, ast.ClassDef) and size > MAX_CLASS_LINES:
                found.append(f"{where}:{node.lineno} class {node.name}: {size} lines (at most {MAX_CLASS_LINES})")
    return found


def test_no_function_class_or_module_is_past_its_size_limit() -> None:
    assert _too_big() == []


def test_at_most_ten_modules_sit_at_the_top_of_the_package() -> None:
    top = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_MODULES, top
