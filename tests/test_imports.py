"""The package's import structure: importing a module does nothing but define things."""

import json
import subprocess
import sys

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
