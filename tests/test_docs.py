"""The generated configuration reference (docs/hooks/config_reference.py) against the real config: every key
the composed config has is on the page, with its tags and the option files that set it, and each has help."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

HOOK = Path(__file__).resolve().parents[1] / "docs" / "hooks" / "config_reference.py"


@pytest.fixture(scope="module")
def reference():
    spec = importlib.util.spec_from_file_location("config_reference", HOOK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as mkdocs loads a hook: its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def keys(reference):
    return reference.config_keys()


def composed_keys(config) -> set[str]:
    """The dotted keys of a composed config: a dict flattens to its entries; a list or an empty dict is one key."""

    def walk(node: object, prefix: str) -> set[str]:
        if isinstance(node, dict) and node:
            return set().union(*(walk(value, f"{prefix}{key}.") for key, value in node.items()))
        return {prefix.rstrip(".")}

    return {key for key in walk(OmegaConf.to_container(config, resolve=False), "") if not key.startswith("hydra.")}


@pytest.mark.parametrize("overrides", [(), ("task=gsm8k", "model=smollm2_135m_instruct", "trainer=deepspeed")])
def test_every_key_of_a_composed_config_is_on_the_page(keys, make_config, overrides):
    config = make_config(*overrides)
    task = f"task (task={config.task.name})"
    listed = {key.name for key in keys if not key.section.startswith("task (") or key.section == task}
    composed = composed_keys(config)
    # A dict-valued key's entries (cluster.additional_parameters.<option>) belong to the key listed above them.
    missing = {key for key in composed if not any(key == k or key.startswith(k + ".") for k in listed)}
    assert not missing, f"keys in the composed config but not on the reference page: {sorted(missing)}"
    sections = {k for k in listed if any(other.startswith(k + ".") for other in listed)}  # model.tiny
    absent = {k for k in listed - sections if not any(c == k or c.startswith(k + ".") for c in composed)}
    assert {k for k in absent if not k.startswith("model.tiny.")} == set()  # model.tiny is null for real models


def test_tags_and_setters_come_from_the_fields_and_conf(reference, keys):
    by_name = {key.name: key for key in keys}
    assert "runtime_only" in by_name["cluster.nodes"].tags  # the cluster section is tagged as a whole
    assert by_name["sampler.hf.batch_size"].tags == ("resume_may_change",)
    assert by_name["seed"].tags == ("seeding",) and by_name["loss.alpha"].tags == ()
    set_by = reference.setters(keys)
    assert "model=tiny" in set_by["loss.alpha"] and "model=tiny" in set_by["trainer.lr"]  # its two departures
    assert "experiment=smoke" in set_by["model.tiny.hidden_size"] and set_by["seed"] == []  # the schema's default
    page = reference.render()
    assert page.count("\n| `") == len(keys)  # one row a key
    assert "| `trainer.torch.mixed_precision` | str | `auto` |" in page


def test_every_key_has_help_text(keys):
    with_help = [key.name for key in keys if key.help]
    if not with_help:
        pytest.skip("no config field has metadata['help'] yet: the help text moves there from comments")
    assert [key.name for key in keys if not key.help] == []
