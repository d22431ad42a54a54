"""One home for every setting: in any composition of conf/, each key is set by one file at most, and an option
file says only what differs from the schema's defaults.

A later file may set a key an earlier file of its composition already set only when it is a deliberate
override: a file marks itself as one with a comment line `# deliberate override: <why>` in its header (the
presets, conf/method/ and conf/experiment/, do; so does a loss that fixes alpha whatever the model's option
set). Anything else that sets a key twice is two homes for one value, where editing the first does nothing.
"""

from __future__ import annotations

import itertools
from functools import cache
from pathlib import Path

import pytest
from conftest import CONF_DIR
from hydra import initialize_config_dir
from hydra._internal.config_repository import CachingConfigRepository
from hydra._internal.defaults_list import create_defaults_list
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from irpo.config import config_keys, paper_departures, task_config_keys

CONF = Path(CONF_DIR)
MARKER = "# deliberate override:"
GROUPS = sorted(p.name for p in CONF.iterdir() if p.is_dir())
OPTIONS = [(group, p.stem) for group in GROUPS for p in sorted((CONF / group).glob("*.yaml"))]
# An option's own name is how it identifies itself (`name: torch`, `method: irpo`), even where it is the default.
IDENTITY_KEYS = ("method",)


@cache
def header(path: Path) -> list[str]:
    lines = path.read_text().splitlines()
    return list(itertools.takewhile(lambda line: line.startswith("#") or not line.strip(), lines))


def is_deliberate(path: Path) -> bool:
    return any(line.startswith(MARKER) for line in header(path))


@cache
def values_set(path: Path, package: str) -> dict[str, object]:
    """The keys a file sets, by their full dotted key (interpolations included), its defaults list and hydra
    settings left out; an empty mapping (`tiny: {}`) is a value."""
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    found: dict[str, object] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict) and value:
            for k, v in value.items():
                if not (key == "" and k in ("defaults", "hydra")):
                    walk(v, f"{key}.{k}" if key else str(k))
        elif key:
            found[key] = value

    walk(node, package)
    return found


@cache
def repository() -> CachingConfigRepository:
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return CachingConfigRepository(GlobalHydra.instance().config_loader().repository)


def composition(overrides: tuple[str, ...]) -> list[tuple[Path, str]]:
    """The conf/ files a composition merges, in merge order, each with the package its keys go under (Hydra's
    own defaults list)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    defaults = create_defaults_list(repository(), "config", parsed, prepend_hydra=True, skip_missing=False).defaults
    files = [(CONF / f"{d.config_path}.yaml", d.package or "") for d in defaults]
    return [(path, package) for path, package in files if path.exists()]


def homes_broken(overrides: tuple[str, ...]) -> list[str]:
    """'key: a.yaml, then b.yaml' for each key a later, not deliberate, file sets again (or sets under)."""
    first_home: dict[str, Path] = {}
    broken = []
    for path, package in composition(overrides):
        for key in values_set(path, package):
            earlier = [k for k in first_home if overlap(k, key)]
            if earlier and not is_deliberate(path):
                broken += [f"{k}: {first_home[k].relative_to(CONF)}, then {path.relative_to(CONF)}" for k in earlier]
            first_home.setdefault(key, path)
    return broken


def compositions() -> list[tuple[str, ...]]:
    """The default, every option alone, and every pair of options from two groups that can meet: a pair adds a
    second home only where the files the two options bring (their own, or what they pull in or override) set
    a key in common, so pairs whose files set disjoint keys are left out."""
    single = [(f"{g}={o}",) for g, o in OPTIONS]
    base = composition(())
    keys = {
        option: {
            key
            for path, package in composition(option)
            if (path, package) not in base
            for key in values_set(path, package)
        }
        for option in single
    }
    pairs = [
        a + b
        for a, b in itertools.combinations(single, 2)
        if a[0].split("=")[0] != b[0].split("=")[0] and any(overlap(k, j) for k in keys[a] for j in keys[b])
    ]
    return [(), *single, *pairs]


def overlap(key: str, other: str) -> bool:
    return key == other or key.startswith(other + ".") or other.startswith(key + ".")


def test_every_key_has_one_home_in_every_composition():
    broken = sorted({line for overrides in compositions() for line in homes_broken(overrides)})
    assert not broken, "keys set by two files of one composition:\n" + "\n".join(broken)


def schema_defaults() -> dict[str, object]:
    keys = config_keys() + [k for task in task_config_keys().values() for k in task]
    return {k.key: k.default for k in keys if not k.key.startswith("task.") or k.key != "task"}


def test_option_files_say_only_what_differs_from_the_schema():
    defaults = schema_defaults()
    restated = []
    for group, option in OPTIONS:
        path = CONF / group / f"{option}.yaml"
        if is_deliberate(path):
            continue
        text = path.read_text()
        package = "" if "@package _global_" in text else group
        for key, value in values_set(path, package).items():
            read_here = "${" + key + "}" in text  # an interpolation in the file reads it as the file loads
            if key.rsplit(".", 1)[-1] in ("name", *IDENTITY_KEYS) or read_here:
                continue
            if defaults.get(key, ...) == value:
                restated.append(f"{path.relative_to(CONF)}: {key}={value} is the schema's default")
    assert not restated, "\n".join(restated)


def test_the_check_finds_a_second_home_and_honours_the_marker(tmp_path, monkeypatch):
    task = CONF / "task" / "arithmetic.yaml"
    assert not is_deliberate(task) and is_deliberate(CONF / "experiment" / "smoke.yaml")
    # task=arithmetic would restate model=tiny's trainer.lr: two homes, unless it marks itself.
    setting_lr, real = {**values_set(task, ""), "trainer.lr": 1.0}, values_set
    monkeypatch.setattr(
        sys_module(), "values_set", lambda path, package: setting_lr if path == task else real(path, package)
    )
    assert homes_broken(()) == ["trainer.lr: model/tiny.yaml, then task/arithmetic.yaml"]
    monkeypatch.setattr(sys_module(), "is_deliberate", lambda path: path == task)
    assert homes_broken(()) == []


def sys_module():
    import sys

    return sys.modules[__name__]


@pytest.mark.parametrize(
    "overrides, lr, alpha",
    [
        ((), 5e-4, 4.0),  # the embedded default: the tiny model's two departures
        (("model=smollm2_135m_instruct",), 7e-7, 1.0),  # a real model on the default task: the paper's
        (("model=smollm2_135m_instruct", "experiment=smoke"), 7e-7, 1.0),
        (("task=gsm8k", "model=llama3_2_1b_instruct"), 7e-7, 1.0),
        (("method=dpo",), 5e-4, 0.0),  # DPO is alpha = 0 on any model
        (("method=star",), 5e-4, 1.0),  # SFT: no alpha to weigh, the paper's recorded
        (("experiment=gsm8k_8b_lora_1gpu",), 7e-6, 1.0),  # a preset's own lr
    ],
)
def test_departures_from_the_paper_come_from_the_tiny_model_only(make_config, overrides, lr, alpha):
    cfg = make_config(*overrides)
    assert (cfg.trainer.lr, cfg.loss.alpha) == (lr, alpha)


def test_the_embedded_defaults_departures_are_named_for_the_log(make_config):
    assert paper_departures(make_config()) == ["trainer.lr=0.0005 (paper: 7e-07)", "loss.alpha=4.0 (paper: 1.0)"]
    assert paper_departures(make_config("model=smollm2_135m_instruct")) == []
    assert paper_departures(make_config("method=dpo")) == ["trainer.lr=0.0005 (paper: 7e-07)"]
