"""Runtime-only keys (tagged `runtime_only` in irpo/config/schema.py): one list, read both when a sweep names its
job dirs and when a resumed run compares its config with the one it started with."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import CONF_DIR
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from irpo.config import RESUME_MAY_CHANGE, resumable, sweep_dir_exclude_keys, tagged_keys
from irpo.loop import record_config
from irpo.rundir import RunDir


def leaf_keys(node, prefix: str = "") -> set[str]:
    """Every dotted key of a composed config, sections included."""
    keys = set()
    for key, value in node.items():
        keys.add(prefix + key)
        if isinstance(value, dict):
            keys |= leaf_keys(value, f"{prefix}{key}.")
    return keys


def composed(*overrides: str):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


def test_sweep_dir_names_and_resume_checks_agree_on_every_key():
    cfg = composed("trainer=deepspeed", "logger=wandb", "cluster=slurm")
    excluded = list(cfg.hydra.job.config.override_dirname.exclude_keys)  # what Hydra itself reads
    assert excluded == sweep_dir_exclude_keys()
    container = OmegaConf.to_container(cfg, resolve=False)
    del container["hydra"]
    keys = leaf_keys(container)
    assert set(excluded) <= keys, f"not config keys: {set(excluded) - keys}"  # a stale name would match nothing
    # The one difference allowed: a key tagged RESUME_MAY_CHANGE can change what a sweep job computes (so it
    # names the job's dir) but not its finished work (so a resumed run may change it).
    disagree = {key for key in keys if resumable(key) != (key in excluded)}
    assert disagree == set(tagged_keys(RESUME_MAY_CHANGE))
    assert disagree == {
        "iterations",
        "sampler.hf.batch_size",
        "sampler.hf.device",
        "trainer.torch.device",
        "trainer.logprob_chunk_size",
    }


def test_the_keys_the_two_lists_disagreed_on_are_now_runtime_only_in_both():
    excluded = sweep_dir_exclude_keys()
    for key in ("sampler.vllm.gpu_memory_utilization", "sampler.vllm.python", "trainer.deepspeed.num_processes"):
        assert key in excluded and resumable(key), key
    assert "run_dir" in excluded and resumable("run_dir")
    for key in ("loss.alpha", "trainer.lr", "trainer.deepspeed.zero_stage", "sampler.shard_prompts", "seed"):
        assert key not in excluded and not resumable(key), key
    assert {"cluster", "cluster.nodes", "logger", "logger.mode"} <= set(excluded)
    assert resumable("cluster.additional_parameters.gres") and resumable("logger.tags")


def test_resume_accepts_runtime_only_changes_and_refuses_the_rest(make_config, tmp_path):
    run_dir = RunDir(tmp_path / "run").create()
    record_config(run_dir, make_config())
    record_config(
        run_dir,
        make_config("sampler.vllm.gpu_memory_utilization=0.5", "trainer.deepspeed.num_processes=4", "cluster.nodes=2"),
    )
    with pytest.raises(ValueError, match=r"\(loss.beta, trainer.deepspeed.zero_stage changed\)"):
        record_config(run_dir, make_config("loss.beta=0.5", "trainer.deepspeed.zero_stage=2"))


def test_a_run_recorded_before_a_key_existed_resumes_with_it_at_its_default(make_config, tmp_path):
    run_dir = RunDir(tmp_path / "run").create()
    record_config(run_dir, make_config())
    recorded = OmegaConf.load(run_dir.config)
    del recorded.pairs["max_pairs"]  # as an older release wrote it: an optional key (default null)...
    del recorded["skip_seed_sft"]  # ...and a flag (default false)
    OmegaConf.save(recorded, run_dir.config)
    record_config(run_dir, make_config())  # at the default now, absent then: the same
    with pytest.raises(ValueError, match=r"\(pairs.max_pairs changed\)"):
        record_config(run_dir, make_config("pairs.max_pairs=8"))
    with pytest.raises(ValueError, match=r"\(skip_seed_sft changed\)"):
        record_config(run_dir, make_config("skip_seed_sft=true"))


@pytest.mark.slow
def test_a_runtime_only_override_names_no_sweep_dir_and_a_resumed_sweep_accepts_its_change(tmp_path, model_cache):
    """A real multirun (`python -m irpo -m`), twice into the same sweep dir with another runtime-only value."""
    sweep = tmp_path / "sweep"
    env = {**os.environ, "IRPO_CACHE": str(model_cache)}

    def multirun(memory: float) -> None:
        args = [
            *("-m", "experiment=smoke", "iterations=0", "eval.majority_k=0", "loss.alpha=1,2"),
            f"sampler.vllm.gpu_memory_utilization={memory}",
            f"hydra.sweep.dir={sweep}",
        ]
        result = subprocess.run(
            [sys.executable, "-m", "irpo", *args], capture_output=True, text=True, env=env, timeout=900
        )
        assert result.returncode == 0, result.stderr[-3000:]

    multirun(0.5)
    jobs = {p.name for p in sweep.iterdir() if (p / "config.yaml").exists()}
    assert jobs == {"eval.majority_k=0,iterations=0,loss.alpha=1", "eval.majority_k=0,iterations=0,loss.alpha=2"}
    evaluated = sweep / "eval.majority_k=0,iterations=0,loss.alpha=2" / "iter_0" / "eval.json"
    stamp = evaluated.stat().st_mtime_ns
    multirun(0.7)  # the same jobs, resumed: accepted, nothing redone, the new value recorded
    assert {p.name for p in sweep.iterdir() if (p / "config.yaml").exists()} == jobs
    assert evaluated.stat().st_mtime_ns == stamp
    config = OmegaConf.load(sweep / "eval.majority_k=0,iterations=0,loss.alpha=2" / "config.yaml")
    assert config.sampler.vllm.gpu_memory_utilization == 0.7 and config.loss.alpha == 2


def test_auto_settings_are_recorded_as_resolved_and_a_resume_elsewhere_is_refused(
    make_config, tmp_path, untrained_tiny
):
    """resolved.json holds what `auto` became on this machine; a resumed run may move to another device (as
    config.yaml's device keys may change) but not to a machine that trains or samples in another precision."""
    from irpo.config import ConfigError, record_resolved, resolve_auto
    from irpo.files import read_json
    from irpo.models.precision import cpu_has_native_bf16

    run_dir = RunDir(tmp_path / "run").create()
    resolved = resolve_auto(make_config(), str(untrained_tiny))
    autocast = "bf16" if cpu_has_native_bf16() else "none"
    assert resolved == {
        "sampler.name": "hf",  # no GPU here: the sampling loop
        "sampler.hf.device": "cpu",
        "sampler.hf.dtype": "float32",  # a 1M-parameter model gains nothing from bfloat16
        "trainer.torch.device": "cpu",
        "trainer.torch.mixed_precision": autocast,
    }
    record_resolved(run_dir, resolved)
    assert read_json(run_dir.root / "resolved.json") == resolved
    record_resolved(run_dir, {**resolved, "trainer.torch.device": "cuda:0"})  # where, not what: accepted
    other = "none" if autocast == "bf16" else "bf16"
    with pytest.raises(ConfigError, match=rf"trainer.torch.mixed_precision: '{autocast}' there, '{other}' here"):
        record_resolved(run_dir, {**resolved, "trainer.torch.mixed_precision": other})
