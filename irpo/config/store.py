"""Registering the schema with Hydra: called by `python -m irpo` (and the tests) before composing, never at import."""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from irpo.config.keys import sweep_dir_exclude_keys
from irpo.config.schema import Config
from irpo.tasks import TASKS


def register_configs() -> None:
    """The root schema, each task's dataclass as `task_schema/<name>` for conf/task/<name>.yaml, and the
    resolver that gives conf/config.yaml the keys left out of sweep dir names."""
    if not OmegaConf.has_resolver("irpo_sweep_dir_exclude_keys"):
        OmegaConf.register_new_resolver("irpo_sweep_dir_exclude_keys", sweep_dir_exclude_keys)
    store = ConfigStore.instance()
    store.store(name="irpo_schema", node=Config)
    for name in TASKS.names():
        store.store(group="task_schema", name=name, node=TASKS.get(name).config_class)
