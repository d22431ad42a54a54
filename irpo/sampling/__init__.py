"""Samplers by name: each turns a model directory and prompts into N completions per prompt (irpo.protocols.Sampler)."""

from __future__ import annotations

from irpo.protocols import Completion, PromptShard, Sampler, Samples, SamplingRequest, SamplingStats
from irpo.registry import Registry
from irpo.sampling.auto import AutoSampler
from irpo.sampling.hf import HFSampler
from irpo.sampling.vllm_sampler import VLLMSampler

SAMPLERS: Registry[type] = Registry("sampler")
SAMPLERS.register("hf")(HFSampler)
SAMPLERS.register("vllm")(VLLMSampler)
SAMPLERS.register("auto")(AutoSampler)


def build_sampler(sampler_cfg, model_cfg) -> Sampler:
    return SAMPLERS.get(sampler_cfg.name)(sampler_cfg, model_cfg)


def sample_all(sampler: Sampler, model_dir, prompts: list[str], requests: list[SamplingRequest]) -> list[Samples]:
    """Every prompt in one shard (seeded from index 0): one `Samples` per request."""
    (drawn,) = sampler.sample(model_dir, [PromptShard(0, prompts)], requests)
    return drawn


__all__ = [
    "SAMPLERS",
    "Completion",
    "PromptShard",
    "Sampler",
    "Samples",
    "SamplingRequest",
    "SamplingStats",
    "build_sampler",
    "sample_all",
]
