"""sampler=auto: vLLM on a GPU where it is installed; otherwise irpo's own sampling loop (sampler=hf).

On this project's 2-core CPU, SmolLM2-135M-Instruct, N=8, 16 GSM8K prompts (launchers/benchmark_sampling.py, 2
repeats, quiet machine): sampler=hf's loop drew 291 tokens/s (276-306; 427 since its shared-prompt attention)
and vLLM's CPU build 233 (227-238), both in bfloat16, and vLLM's engine took 161 s to start; on the embedded
1M-parameter model vLLM was no faster either. So on a CPU auto takes hf; sampler=vllm still runs vLLM there.
The choice is logged and recorded in generation_stats.json ("backend").
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from irpo.protocols import PromptShard, Samples, SamplingRequest
from irpo.sampling.hf import HFSampler
from irpo.sampling.vllm_sampler import VLLMSampler, has_vllm

log = logging.getLogger(__name__)


def pick_backend(sampler_cfg) -> tuple[str, str]:
    """(hf or vllm, why): vLLM where it is installed (here or at sampler.vllm.python) and a GPU is there."""
    import torch

    if not has_vllm(sampler_cfg.vllm):
        return "hf", "vLLM is not installed"
    if torch.cuda.is_available():
        return "vllm", "a GPU"
    return "hf", "on a CPU irpo's sampling loop measured faster than vLLM's CPU build (docs/performance.md)"


class AutoSampler:
    """Picks hf or vllm at the first draw (`pick_backend`), then hands every call to it."""

    def __init__(self, sampler_cfg, model_cfg):
        self.sampler_cfg, self.model_cfg = sampler_cfg, model_cfg
        self.chosen: HFSampler | VLLMSampler | None = None

    @property
    def name(self) -> str:
        return self.chosen.name if self.chosen is not None else "auto"

    @classmethod
    def check(cls, cfg: Any) -> None:
        HFSampler.check(cfg)  # the fallback is always possible; vLLM's section is checked when it is picked

    def choose(self) -> HFSampler | VLLMSampler:
        if self.chosen is None:
            name, why = pick_backend(self.sampler_cfg)
            log.info("sampler=auto: using %s (%s)", name, why)
            self.chosen = (VLLMSampler if name == "vllm" else HFSampler)(self.sampler_cfg, self.model_cfg)
        return self.chosen

    def sample(
        self, model_dir: str | Path, shards: list[PromptShard], requests: list[SamplingRequest]
    ) -> Iterator[list[Samples]]:
        return self.choose().sample(model_dir, shards, requests)

    def sample_loaded(self, model: Any, tokenizer: Any, prompts: list[str], request: SamplingRequest) -> Samples:
        # A model in memory is drawn by the hf sampler (sampler.hf.decoder) whichever backend was picked.
        return (self.chosen or HFSampler(self.sampler_cfg, self.model_cfg)).sample_loaded(
            model, tokenizer, prompts, request
        )

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()
