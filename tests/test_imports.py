"""The package's import structure: layers with no upward import and no cycle; importing defines, nothing more."""

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

IMPORT_EVERYTHING = """
import importlib, json, pkgutil
import matplotlib
from hydra.core.config_store import ConfigStore
from transformers.utils import logging as hf_logging

def state():
    return {
        "matplotlib_backend": repr(dict.__getitem__(matplotlib.rcParams, "backend")),  # unresolved: not picked yet
        "hf_progress_bars": hf_logging.is_progress_bar_enabled(),
        "config_store": sorted(k for k in ConfigStore.instance().repo if k.removesuffix(".yaml") != "hydra"
                               and not k.startswith("hydra")),
    }

before = state()
import irpo
modules = [m.name for m in pkgutil.walk_packages(irpo.__path__, "irpo.")]
for name in modules:
    importlib.import_module(name)
print(json.dumps({"before": before, "after": state(), "modules": len(modules)}))
"""


def test_importing_every_module_changes_no_global_setting():
    """matplotlib's backend, transformers' progress bars and Hydra's ConfigStore are left as they were: the
    function that needs a setting makes it (report figures are plain Figures, __main__ registers the schema)."""
    done = subprocess.run([sys.executable, "-c", IMPORT_EVERYTHING], capture_output=True, text=True, check=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["modules"] > 30
    assert result["after"] == result["before"]


# The package's layers, bottom first: a module may import its own layer and those below, never one above.
# A module belongs to the layer of the longest prefix listed (irpo.sampling covers irpo.sampling.hf).
LAYERS = [
    # no ML: files, names, settings
    ["irpo", "irpo.registry", "irpo.files", "irpo.rundir", "irpo.child", "irpo.setting", "irpo.seeds", "irpo.hub"],
    ["irpo.tasks", "irpo.models", "irpo.loss", "irpo.stats", "irpo.protocols"],  # the parts and their types
    ["irpo.sampling", "irpo.training", "irpo.tracking", "irpo.pairs", "irpo.shards"],  # backends, by name
    ["irpo.config"],  # the schema, and `validate`, which asks every registered part
    [
        "irpo.stage_context",  # what the stages share
        "irpo.seed_model",
        "irpo.generate",
        "irpo.reward",
        "irpo.train",
        "irpo.evaluate",
        "irpo.results",
    ],  # stages
    ["irpo.loop"],  # Figure 1
    ["irpo.__main__", "irpo.report"],  # entry points
]
PACKAGE = Path(__file__).resolve().parents[1] / "irpo"


def module_files() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports_of(path: Path, modules: dict[str, Path]) -> set[str]:
    """The irpo modules `path` imports, at any depth of its code (imports inside functions count: they
    only hide a dependency). `from a import b` names module a.b where b is one, else module a."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [
                f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module for a in node.names
            ]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def layer_of(module: str) -> int:
    matches = [
        (len(prefix), i)
        for i, layer in enumerate(LAYERS)
        for prefix in layer
        if module == prefix or (module.startswith(prefix + ".") and prefix != "irpo")
    ]
    assert matches, f"{module} is in no layer: add it to LAYERS in {__file__}"
    return max(matches)[1]


def import_graph() -> dict[str, set[str]]:
    modules = module_files()
    return {name: imports_of(path, modules) - {name} for name, path in modules.items()}


def test_no_module_imports_from_a_higher_layer():
    upward = [
        f"{module} (layer {layer_of(module)}) imports {target} (layer {layer_of(target)})"
        for module, targets in import_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycle():
    graph = import_graph()
    done: set[str] = set()

    def visit(module: str, path: list[str]) -> None:
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join([*path[path.index(module) :], module]))
        if module in done:
            return
        for target in sorted(graph[module]):
            visit(target, [*path, module])
        done.add(module)

    for module in sorted(graph):
        visit(module, [])


def test_the_checks_find_what_they_look_for(tmp_path, monkeypatch):
    """A function-level import from a low module to a high one is both upward and, here, a cycle."""
    graph = import_graph()
    graph["irpo.files"] = graph["irpo.files"] | {"irpo.loop"}
    monkeypatch.setattr(sys.modules[__name__], "import_graph", lambda: graph)
    with pytest.raises(AssertionError, match=r"irpo.files \(layer 0\) imports irpo.loop \(layer 5\)"):
        test_no_module_imports_from_a_higher_layer()
    with pytest.raises(AssertionError, match=r"import cycle: .*irpo.files -> irpo.loop"):
        test_no_import_cycle()
    hidden = tmp_path / "hidden.py"
    hidden.write_text("def f():\n    from irpo.loop import run\n    import irpo.tasks.math\n")
    assert imports_of(hidden, module_files()) == {"irpo.loop", "irpo.tasks.math"}
