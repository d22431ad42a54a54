"""The values a config leaves to the machine (`auto`: the sampler backend, devices, the sampling dtype, the
training autocast), as this machine resolves them: recorded in the run directory (resolved.json), checked when
the run resumes, and read by the report, which groups runs by what they computed."""

from __future__ import annotations

from typing import Any

import torch
from omegaconf import DictConfig

from irpo.config.keys import changed_keys, resumable
from irpo.config.validate import ConfigError
from irpo.files import read_json, write_json
from irpo.models.loading import pick_device
from irpo.models.precision import autocast_dtype, sampling_dtype
from irpo.rundir import RunDir
from irpo.sampling.auto import pick_backend
from irpo.sampling.vllm_sampler import vllm_default_dtype
from irpo.training.deepspeed_trainer import use_bf16

RESOLVED = "resolved.json"


def resolve_auto(cfg: DictConfig, model_dir: str) -> dict[str, Any]:
    """{config key: the value this machine gives it} for the keys whose value the machine decides, whether the
    config says `auto` or a value. The hf sampler's keys always count (it also scores checkpoints held in
    memory), as do trainer.torch's (M0's SFT runs on the torch trainer)."""
    backend = pick_backend(cfg.sampler)[0] if cfg.sampler.name == "auto" else cfg.sampler.name
    sampling_device = pick_device(cfg.sampler.hf.device)
    training_device = pick_device(cfg.trainer.torch.device)
    mixed = autocast_dtype(cfg.trainer.torch.mixed_precision, training_device, cfg.model.dtype)
    resolved: dict[str, Any] = {
        "sampler.name": backend,
        "sampler.hf.device": str(sampling_device),
        "sampler.hf.dtype": sampling_dtype(cfg.sampler.hf.dtype, cfg.model.dtype, sampling_device, model_dir)[0],
        "trainer.torch.device": str(training_device),
        "trainer.torch.mixed_precision": "bf16" if mixed is not None else "none",
    }
    if backend == "vllm":
        resolved["sampler.vllm.dtype"] = cfg.sampler.vllm.dtype or vllm_default_dtype(cfg.model, model_dir)
    if cfg.trainer.name == "deepspeed":
        bf16 = use_bf16(cfg.trainer.deepspeed.bf16, on_gpu=torch.cuda.is_available())
        resolved["trainer.deepspeed.bf16"] = "true" if bf16 else "false"
    return resolved


def record_resolved(run_dir: RunDir, resolved: dict[str, Any]) -> None:
    """Writes resolved.json; on resume, refuses a machine that resolves a key to another value where a resumed
    run may not change that key (a device may change, as in config.yaml; the autocast may not)."""
    path = run_dir.root / RESOLVED
    if path.exists():
        previous = read_json(path)
        changed = [key for key in changed_keys(previous, resolved) if not resumable(key)]
        if changed:
            detail = ", ".join(f"{k}: {previous.get(k)!r} there, {resolved.get(k)!r} here" for k in changed)
            raise ConfigError(
                f"{run_dir.root} was started on a machine that resolved its auto settings otherwise ({detail}); "
                "resume it on a machine where they resolve the same, or use a new run directory"
            )
    write_json(path, resolved)


def read_resolved(run_root: Any) -> dict[str, Any]:
    """A run's resolved.json ({} for a run recorded before it existed)."""
    path = RunDir(run_root).root / RESOLVED
    return read_json(path) if path.exists() else {}
