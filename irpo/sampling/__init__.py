"""Samplers by name: each turns a model directory and prompts into N completions per prompt."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from irpo.registry import Registry
from irpo.sampling.hf import HFSampler
from irpo.sampling.vllm_sampler import VLLMSampler

SAMPLERS: Registry[type] = Registry("sampler")
SAMPLERS.register("hf")(HFSampler)
SAMPLERS.register("vllm")(VLLMSampler)


@dataclass(frozen=True)
class SamplingRequest:
    """What to draw; the same fields whichever backend draws it."""

    num_samples: int
    temperature: float  # 0 = greedy
    top_p: float
    max_new_tokens: int
    seed: int
    stop_after: Optional[str] = "Final answer:"  # hf: stop at the end of the line holding this text
    stop: tuple[str, ...] = ()  # stop at any of these strings (kept in the output), every backend


def build_sampler(sampler_cfg, model_cfg):
    return SAMPLERS.get(sampler_cfg.name)(sampler_cfg, model_cfg)


__all__ = ["SAMPLERS", "SamplingRequest", "build_sampler"]
