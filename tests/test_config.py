"""Bad configs fail at compose or validation time with a message that names the problem."""

import subprocess
import sys
from pathlib import Path

import pytest
from hydra.errors import ConfigCompositionException
from omegaconf import DictConfig, OmegaConf

from irpo.config import validate

CONF = Path(__file__).resolve().parents[1] / "conf"
GROUPS = ("model", "loss", "sampler", "trainer", "cluster", "logger", "task", "method", "experiment")  # defaults order


def option_values(group: str, option: str) -> dict[str, object]:
    """The plain values an option file sets, by their full key in the composed config (interpolations left out)."""
    path = CONF / group / f"{option}.yaml"
    node = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    prefix = "" if "@package _global_" in path.read_text().splitlines()[0] else f"{group}."
    values: dict[str, object] = {}

    def walk(value: object, key: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if k not in ("defaults", "hydra"):
                    walk(v, f"{key}.{k}" if key else str(k))
        elif not (isinstance(value, str) and "${" in value):
            values[prefix + key] = value

    walk(node, "")
    return values


def test_every_group_option_composes_with_its_values(make_config):
    defaults = {
        g: o
        for entry in OmegaConf.load(CONF / "config.yaml").defaults
        if isinstance(entry, DictConfig)
        for g, o in entry.items()
    }
    for position, group in enumerate(GROUPS):
        # A default option of a later group (task=arithmetic's trainer.lr) overrides what an earlier one sets.
        later = {key for g in GROUPS[position + 1 :] if defaults.get(g) for key in option_values(g, defaults[g])}
        for option in sorted(p.stem for p in (CONF / group).glob("*.yaml")):
            cfg = make_config(f"{group}={option}")
            expected = {k: v for k, v in option_values(group, option).items() if k not in later}
            composed = {
                k: OmegaConf.to_container(v) if OmegaConf.is_config(v) else v
                for k in expected
                for v in [OmegaConf.select(cfg, k)]
            }
            assert composed == expected, f"{group}={option}"


def test_unknown_group_option_lists_the_available_ones(make_config):
    with pytest.raises(ConfigCompositionException, match="arithmetic"):
        make_config("task=nope")


def test_typo_in_a_field_fails_at_compose_time(make_config):
    with pytest.raises(ConfigCompositionException) as info:
        make_config("loss.alhpa=1")
    assert "alhpa" in str(info.value.__cause__ or info.value)


def test_typo_in_a_task_field_fails_at_compose_time(make_config):
    with pytest.raises(ConfigCompositionException, match="num_trian"):
        make_config("task.num_trian=3")
    with pytest.raises(ConfigCompositionException, match="max_reasoning_steps"):
        make_config("task=gsm8k", "task.max_reasoning_steps=3")  # an arithmetic knob is not a GSM8K field
    assert make_config("task.max_reasoning_steps=3").task.max_reasoning_steps == 3


@pytest.mark.parametrize("old, new", [("min_steps", "min_reasoning_steps"), ("max_steps", "max_reasoning_steps")])
def test_a_renamed_task_key_fails_naming_the_new_one(make_config, tmp_path, old, new):
    with pytest.raises(ValueError, match=rf"task.{old} is now task.{new}: set task.{new}=3 instead$"):
        validate(make_config(f"task.{old}=3"))
    preset = tmp_path / "conf" / "experiment"
    preset.mkdir(parents=True)
    (preset / "old.yaml").write_text(f"# @package _global_\ntask:\n  {old}: 3\n")
    with pytest.raises(ValueError, match=rf"task.{new}=3"):  # in a YAML file too
        validate(make_config(f"hydra.searchpath=[file://{tmp_path / 'conf'}]", "experiment=old"))


def test_a_renamed_key_on_the_command_line_is_one_line(tmp_path):
    command = [sys.executable, "-m", "irpo", f"hydra.run.dir={tmp_path / 'run'}", "task.max_steps=3"]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-2:] == [
        "irpo: config error: invalid config for task 'arithmetic': task.max_steps is now task.max_reasoning_steps: "
        "set task.max_reasoning_steps=3 instead",
        "(IRPO_DEBUG=1 shows the traceback)",
    ]


def test_unknown_registered_name_lists_valid_names(make_config):
    with pytest.raises(KeyError, match="unknown loss .ipo.; valid choices: dpo_nll, sft"):
        validate(make_config("loss.name=ipo"))


def test_missing_model_directory_is_named(make_config, tmp_path):
    missing = tmp_path / "no_such_model"
    with pytest.raises(FileNotFoundError, match="no_such_model"):
        validate(make_config(f"model.name_or_path={missing}", "model.tiny=null"))


def test_command_line_errors_are_one_line_not_a_traceback(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "irpo",
            f"hydra.run.dir={tmp_path}",
            "model.tiny=null",
            f"model.name_or_path={tmp_path}/missing_model",
        ],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    assert "missing_model does not exist" in result.stderr and "Traceback" not in result.stderr


def test_retraining_with_held_out_needs_checkpoint_selection(make_config):
    with pytest.raises(ValueError, match="trainer.eval_every > 0"):
        validate(make_config("trainer.retrain_with_heldout=true", "trainer.eval_every=0"))


def test_optional_backends_are_checked_before_any_work(make_config, tmp_path):
    import importlib.util

    with pytest.raises(FileNotFoundError, match="no such interpreter"):
        validate(make_config("sampler=vllm", f"sampler.vllm.python={tmp_path}/venv/bin/python"))
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ValueError, match=r"sampler=vllm needs vLLM: pip install -e '.\[vllm\]'"):
            validate(make_config("sampler=vllm"))
    validate(make_config("sampler=vllm", f"sampler.vllm.python={sys.executable}"))  # an interpreter that exists


def test_deepspeed_batch_must_split_evenly_across_ranks(make_config):
    with pytest.raises(ValueError, match=r"micro_batch_size x ranks \(8 x 4\)"):
        validate(make_config("trainer=deepspeed", "trainer.deepspeed.num_processes=4", "trainer.micro_batch_size=8"))
    validate(make_config("trainer=deepspeed", "trainer.deepspeed.num_processes=2", "trainer.micro_batch_size=8"))


def test_unknown_logger_lists_the_valid_ones(make_config):
    with pytest.raises(Exception, match="logger"):
        make_config("logger=tensorboard")
    with pytest.raises(ValueError, match="valid choices: disabled, offline, online"):
        validate(make_config("logger=wandb", "logger.mode=cloud"))


def test_typo_in_the_lr_schedule_fails_at_validate(make_config):
    """An unknown schedule must fail before M0 is evaluated, not when the first training stage starts."""
    validate(make_config("trainer.lr_schedule=cosine"))
    with pytest.raises(ValueError, match="unknown trainer.lr_schedule 'cosin'; valid schedules: constant, cosine"):
        validate(make_config("trainer.lr_schedule=cosin"))
