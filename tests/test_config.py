"""Bad configs fail at compose or validation time with a message that names the problem."""

import subprocess
import sys

import pytest
from hydra.errors import ConfigCompositionException

from irpo.config import validate


def test_every_group_option_composes(make_config):
    from pathlib import Path

    conf = Path(__file__).resolve().parents[1] / "conf"
    for group in ("model", "loss", "sampler", "trainer", "cluster", "task", "method", "experiment"):
        for option in sorted((conf / group).glob("*.yaml")):
            cfg = make_config(f"{group}={option.stem}")
            assert cfg is not None


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
    with pytest.raises(ConfigCompositionException, match="max_steps"):
        make_config("task=gsm8k", "task.max_steps=3")  # an arithmetic knob is not a GSM8K field
    assert make_config("task.max_steps=3").task.max_steps == 3


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
        validate(make_config("trainer=deepspeed", "trainer.num_processes=4", "trainer.micro_batch_size=8"))
    validate(make_config("trainer=deepspeed", "trainer.num_processes=2", "trainer.micro_batch_size=8"))


def test_unknown_logger_lists_the_valid_ones(make_config):
    with pytest.raises(Exception, match="logger"):
        make_config("logger=tensorboard")
    with pytest.raises(ValueError, match="valid choices: disabled, offline, online"):
        validate(make_config("logger=wandb", "logger.mode=cloud"))
