"""Samplers by name: each turns a model directory and prompts into N completions per prompt."""

from __future__ import annotations

from irpo.registry import Registry
from irpo.sampling.hf import HFSampler
from irpo.sampling.types import Completion, SamplingRequest
from irpo.sampling.vllm_sampler import VLLMSampler

SAMPLERS: Registry[type] = Registry("sampler")
SAMPLERS.register("hf")(HFSampler)
SAMPLERS.register("vllm")(VLLMSampler)


def build_sampler(sampler_cfg, model_cfg):
    return SAMPLERS.get(sampler_cfg.name)(sampler_cfg, model_cfg)


__all__ = ["SAMPLERS", "Completion", "SamplingRequest", "build_sampler"]
