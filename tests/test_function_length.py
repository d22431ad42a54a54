"""A function fits on a screen: none in irpo/ is longer than 60 lines, from its `def` (or first decorator) to its
last line, docstring and comments included. A longer one is split into steps that each have a name."""

from __future__ import annotations

import ast
from pathlib import Path

MAX_LINES = 60
PACKAGE = Path(__file__).resolve().parents[1] / "irpo"


def long_functions(root: Path, limit: int = MAX_LINES) -> list[str]:
    """'path:line name (n lines)' for each function or method under `root` longer than `limit` lines."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                first = min([node.lineno, *(d.lineno for d in node.decorator_list)])
                length = (node.end_lineno or node.lineno) - first + 1
                if length > limit:
                    found.append(f"{path.relative_to(root.parent)}:{first} {node.name} ({length} lines)")
    return found


def test_no_function_in_irpo_is_longer_than_a_screen():
    too_long = long_functions(PACKAGE)
    assert not too_long, f"functions over {MAX_LINES} lines:\n" + "\n".join(too_long)


def test_the_check_counts_decorators_docstrings_and_nested_functions(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()

    def body(indent: int, lines: int) -> str:
        return "\n".join(" " * indent + f"x{i} = {i}" for i in range(lines))

    (package / "fits.py").write_text(f'@staticmethod\ndef fits():\n    """Doc."""\n{body(4, 57)}\n')  # 60 lines
    (package / "long.py").write_text(f"class A:\n    def method(self):\n        def inner():\n{body(12, 60)}\n")
    assert long_functions(package) == ["pkg/long.py:2 method (62 lines)", "pkg/long.py:3 inner (61 lines)"]
