"""Every launcher in launchers/ starts: each Python benchmark imports what it uses from irpo and parses its
options (`--help`, run in this process: an import or a name that moved breaks here, in the fast tier, not in
the middle of an hour-long measurement); each shell launcher is valid bash and prints its usage. The
benchmarks' numbers come from running them (README); `mypy irpo launchers` checks their calls."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

LAUNCHERS = Path(__file__).resolve().parents[1] / "launchers"


@pytest.mark.parametrize("path", sorted(LAUNCHERS.glob("*.py")), ids=lambda path: path.name)
def test_each_python_launcher_answers_help(path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(path), "--help"])
    monkeypatch.syspath_prepend(str(LAUNCHERS))  # as `python launchers/<name>.py` runs it
    with pytest.raises(SystemExit) as done:
        runpy.run_path(str(path), run_name="__main__")
    assert done.value.code in (0, None)
    assert capsys.readouterr().out.startswith("usage:")


@pytest.mark.parametrize("path", sorted(LAUNCHERS.glob("*.sh")), ids=lambda path: path.name)
def test_each_shell_launcher_is_valid_bash_and_prints_its_usage(path):
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True).returncode == 0
    shown = subprocess.run(["bash", str(path), "--help"], capture_output=True, text=True)
    assert shown.returncode == 0 and f"bash launchers/{path.name}" in shown.stdout


def test_every_irpo_name_a_launcher_imports_exists():
    """Launchers import most of irpo inside functions that `--help` does not reach: each of those names exists."""
    missing = []
    for path in sorted(LAUNCHERS.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "irpo":
                module = importlib.import_module(str(node.module))
                missing += [
                    f"{path.name}: {node.module}.{alias.name}"
                    for alias in node.names
                    if not hasattr(module, alias.name)
                    and importlib.util.find_spec(f"{node.module}.{alias.name}") is None
                ]
    assert not missing, "\n".join(missing)
