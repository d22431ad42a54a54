"""Mixed precision in training (trainer.torch.mixed_precision) and the sampler's weights (sampler.hf.dtype):
what `auto` picks, that bf16 really runs the forward in bfloat16 and keeps the weights float32, and that
unknown values fail at validate."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import arithmetic_pairs
from omegaconf import OmegaConf
from safetensors.torch import load_file

from irpo.config import ClusterConfig, LossConfig, ModelConfig, TorchTrainerConfig, TrainerConfig, validate
from irpo.models.precision import autocast, autocast_dtype, cpu_has_native_bf16, sampling_dtype
from irpo.training import build_trainer

CPU = torch.device("cpu")


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    flags = "fpu vme sse avx2 avx512f avx512bw"
    for name, extra, expected in [("plain", "", False), ("zen4", " avx512_bf16", True), ("spr", " amx_bf16", True)]:
        cpuinfo = tmp_path / name
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: x\nflags\t\t: {flags}{extra}\n\nprocessor\t: 1\n")
        assert cpu_has_native_bf16(cpuinfo) is expected, name
    assert cpu_has_native_bf16(tmp_path / "absent") is False  # no /proc (macOS): float32


def test_auto_follows_the_device_and_explicit_values_win():
    native = cpu_has_native_bf16()
    assert autocast_dtype("auto", CPU) == (torch.bfloat16 if native else None)
    assert autocast_dtype("auto", CPU, "float16") is None  # half-precision weights are left as they are
    assert autocast_dtype("bf16", CPU) == torch.bfloat16
    assert autocast_dtype("none", CPU) is None
    with pytest.raises(ValueError, match="must be one of auto, bf16, none, not 'fp16'"):
        autocast_dtype("fp16", CPU)


def test_sampling_dtype_auto_leaves_a_small_model_in_its_own_dtype(untrained_tiny):
    """The 1M-parameter model decodes slower in bfloat16 (docs/performance.md): auto keeps model.dtype for it."""
    dtype, why = sampling_dtype("auto", "float32", CPU, untrained_tiny)
    assert dtype == "float32" and ("too small" in why or "no native" in why)
    assert sampling_dtype("bfloat16", "float32", CPU, untrained_tiny)[0] == "bfloat16"
    assert sampling_dtype("model", "float16", CPU, untrained_tiny)[0] == "float16"
    assert sampling_dtype("auto", "bfloat16", CPU, untrained_tiny)[0] == "bfloat16"  # never widened
    # a hub id is a pretrained model: bfloat16 where the CPU has it, as its local copy M1 will get
    expected = "bfloat16" if cpu_has_native_bf16() else "float32"
    assert sampling_dtype("auto", "float32", CPU, "HuggingFaceTB/SmolLM2-135M-Instruct")[0] == expected


def test_unknown_values_fail_at_validate(make_config):
    with pytest.raises(ValueError, match=r"trainer.torch.mixed_precision must be one of auto, bf16, none"):
        validate(make_config("trainer.torch.mixed_precision=fp16"))
    with pytest.raises(ValueError, match=r"sampler.hf.dtype must be one of auto, model, float32"):
        validate(make_config("sampler=hf", "sampler.hf.dtype=bf16"))


def test_autocast_runs_the_matmuls_in_bfloat16():
    layer = torch.nn.Linear(8, 8)
    with autocast(torch.bfloat16, CPU):
        assert layer(torch.randn(2, 8)).dtype == torch.bfloat16
    with autocast(None, CPU):
        assert layer(torch.randn(2, 8)).dtype == torch.float32


def test_bf16_training_moves_the_numbers_by_rounding_only_and_saves_float32(untrained_tiny, tmp_path):
    pairs = arithmetic_pairs(16)
    logs, weights = {}, {}
    for setting in ("none", "bf16"):
        cfg = TrainerConfig(
            lr=1e-3, batch_size=8, micro_batch_size=8, max_steps=2, torch=TorchTrainerConfig("cpu", setting)
        )
        trainer = build_trainer(
            OmegaConf.structured(cfg),
            OmegaConf.structured(ModelConfig(name="tiny")),
            OmegaConf.structured(ClusterConfig()),
        )
        summary = trainer.train(untrained_tiny, pairs, tmp_path / setting, OmegaConf.structured(LossConfig()), seed=1)
        assert summary["mixed_precision"] == {"none": "none", "bf16": "bfloat16"}[setting]
        logs[setting] = [json.loads(line) for line in (tmp_path / setting / "train_log.jsonl").read_text().splitlines()]
        weights[setting] = load_file(tmp_path / setting / "model.safetensors")
    assert all(w.dtype == torch.float32 for w in weights["bf16"].values())
    for full, mixed in zip(logs["none"], logs["bf16"], strict=True):
        assert mixed["loss"] != full["loss"]  # the forward really ran in bfloat16
        assert mixed["loss"] == pytest.approx(full["loss"], rel=2e-2)
        assert mixed["chosen_logps"] == pytest.approx(full["chosen_logps"], rel=2e-2)
