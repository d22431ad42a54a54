"""Every config key says what it means, beside its field (irpo/setting.py), where the docs read it back."""

from __future__ import annotations

import dataclasses

import pytest

from irpo.config import Config, ConfigKey, TrainerConfig, config_keys, task_config_keys
from irpo.setting import HELP, RESUME_MAY_CHANGE, RUNTIME_ONLY, SEEDING, setting

EVERY_KEY = config_keys() + [key for keys in task_config_keys().values() for key in keys]


def test_every_key_of_the_root_and_of_every_task_has_help():
    without = [key.key for key in EVERY_KEY if len(key.help.split()) < 2]
    assert not without, f"keys without help text (declare them with setting(..., help=...)): {without}"
    assert set(task_config_keys()) == {"arithmetic", "arc_challenge", "gsm8k", "math"}


def test_the_listing_names_each_key_with_its_type_default_help_and_tags():
    keys = {key.key: key for key in config_keys()}
    assert keys["trainer.lr"] == ConfigKey("trainer.lr", "float", 7e-7, "AdamW's learning rate (the paper's 7e-7).", ())
    assert keys["trainer"].type == "TrainerConfig" and keys["trainer"].default is None  # a section
    assert keys["cluster.nodes"].tags == (RUNTIME_ONLY,)  # inherited from its runtime-only section
    assert keys["iterations"].tags == (RESUME_MAY_CHANGE,) and keys["seed"].tags == (SEEDING,)
    assert keys["generation.temperatures"].default == [0.8, 0.8, 1.3, 1.3]
    assert [k.key for k in config_keys() if "." not in k.key] == [f.name for f in dataclasses.fields(Config)]
    # The docs generator reads the fields themselves: these metadata names are its interface.
    (lr,) = [f for f in dataclasses.fields(TrainerConfig) if f.name == "lr"]
    assert lr.metadata == {HELP: "AdamW's learning rate (the paper's 7e-7)."}
    assert {k: v for k, v in dataclasses.fields(Config)[-3].metadata.items() if k != HELP} == {SEEDING: True}


def test_a_setting_needs_help_text():
    with pytest.raises(ValueError, match="needs help text"):
        setting(3, help=" ")
