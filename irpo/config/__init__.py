"""The config: its schema (every key's type, default and help), the walks over its keys, and `validate`.

schema.py    the dataclasses under conf/: `Config` and its sections (each task's: irpo/tasks/)
keys.py      each key's help and tags as data (`config_keys`); resume checks, sweep dir names, grouping
derived.py   facts the loop derives from the config (checkpoint selection, temperatures, paper departures)
validate.py  the checks that need more than types, made once before any work
resolved.py  the `auto` values as this machine resolves them (resolved.json), checked on resume
store.py     registering the schema with Hydra (by `python -m irpo`, never at import)
"""

from irpo.config.derived import paper_departures, selects_checkpoints, temperature_for
from irpo.config.keys import (
    MACHINE_LOCAL_KEYS,
    ConfigKey,
    changed_keys,
    config_keys,
    experiment_identity,
    experiment_key,
    flat_config,
    resumable,
    sweep_dir_exclude_keys,
    tagged_keys,
    task_config_keys,
)
from irpo.config.resolved import read_resolved, record_resolved, resolve_auto
from irpo.config.schema import (
    ClusterConfig,
    Config,
    DeepSpeedTrainerConfig,
    EvalConfig,
    GenerationConfig,
    HFSamplerConfig,
    LoggerConfig,
    LoraConfig,
    LossConfig,
    ModelConfig,
    PairsConfig,
    SamplerConfig,
    SeedSFTConfig,
    TinyModelConfig,
    TorchTrainerConfig,
    TrainerConfig,
    VLLMSamplerConfig,
)
from irpo.config.store import register_configs
from irpo.config.validate import ConfigError, validate
from irpo.setting import RESUME_MAY_CHANGE, RUNTIME_ONLY, SEEDING

__all__ = [
    "MACHINE_LOCAL_KEYS",
    "RESUME_MAY_CHANGE",
    "RUNTIME_ONLY",
    "SEEDING",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "ConfigKey",
    "DeepSpeedTrainerConfig",
    "EvalConfig",
    "GenerationConfig",
    "HFSamplerConfig",
    "LoggerConfig",
    "LoraConfig",
    "LossConfig",
    "ModelConfig",
    "PairsConfig",
    "SamplerConfig",
    "SeedSFTConfig",
    "TinyModelConfig",
    "TorchTrainerConfig",
    "TrainerConfig",
    "VLLMSamplerConfig",
    "changed_keys",
    "config_keys",
    "experiment_identity",
    "experiment_key",
    "flat_config",
    "paper_departures",
    "read_resolved",
    "record_resolved",
    "register_configs",
    "resolve_auto",
    "resumable",
    "selects_checkpoints",
    "sweep_dir_exclude_keys",
    "tagged_keys",
    "task_config_keys",
    "temperature_for",
    "validate",
]
