"""The package's layout rules (issue #12), checked on the source: every module under 400 lines, every function
under 80, and every import inside a function says why it is not at the module top (a heavy optional dependency
that must stay out of import time, or an import cycle)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "varylm_hf"
MODULES = sorted(PACKAGE.rglob("*.py"))
MAX_MODULE_LINES, MAX_FUNCTION_LINES = 400, 80


def _functions(tree: ast.AST):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_the_package_is_found():
    assert len(MODULES) > 40 and PACKAGE / "scoring" / "__init__.py" in MODULES


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_module_and_function_sizes(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) < MAX_MODULE_LINES, f"{path.name}: {len(lines)} lines (split it by responsibility)"
    long = [(f.name, f.end_lineno - f.lineno + 1) for f in _functions(ast.parse("\n".join(lines)))
            if f.end_lineno - f.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_every_import_inside_a_function_says_why(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    silent = []
    for func in _functions(ast.parse("\n".join(lines))):
        for node in ast.walk(func):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                here = " ".join(lines[node.lineno - 1:node.end_lineno])
                above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                if "#" not in here and not above.startswith("#"):
                    silent.append(f"{node.lineno}: {lines[node.lineno - 1].strip()}")
    assert not silent, f"{path.name}: in-function imports without a reason (move to the top or comment): {silent}"


def test_the_size_rule_catches_a_long_function(tmp_path):
    body = "\n".join(f"    x{i} = {i}" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"def f():\n{body}\n")
    (func,) = _functions(tree)
    assert func.end_lineno - func.lineno + 1 > MAX_FUNCTION_LINES
