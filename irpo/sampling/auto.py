"""sampler=auto: vLLM where it is installed and pays for its start on the model, else transformers' generate.

Measured on this project's 2-core CPU (launchers/benchmark_sampling.py; one run, on a machine loaded by
other jobs): vLLM's CPU build drew SmolLM2-135M's N=8 samples ~27x faster than bare `generate` (41 vs
1.5 tokens/s; its engine took 230 s to start there, 30-45 s on a quiet machine). On the embedded
1M-parameter model vLLM was no faster than the hf sampler (README, "Throughput and memory"), so on a
CPU it is picked only for models with at least MIN_CPU_WEIGHTS_BYTES of weights. The choice is logged
and recorded in generation_stats.json ("backend").
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from irpo.models.precision import weights_bytes
from irpo.protocols import PromptShard, Samples, SamplingRequest
from irpo.sampling.hf import HFSampler
from irpo.sampling.vllm_sampler import VLLMSampler, has_vllm

log = logging.getLogger(__name__)

# vLLM 0.32's CPU build runs attention heads of these sizes only (tried here: SmolLM2-135M, the tiny model).
CPU_HEAD_DIMS = {64}
MIN_CPU_WEIGHTS_BYTES = 100 * 2**20  # the tiny model has ~4 MB, SmolLM2-135M in float32 ~540 MB


def vllm_pays(model_dir: str | Path) -> tuple[bool, str]:
    """Whether vLLM's engine runs this model on this machine and is worth its start, and why (not)."""
    import torch

    if torch.cuda.is_available():
        return True, "a GPU"
    config = json.loads((Path(model_dir) / "config.json").read_text())
    head_dim = config.get("head_dim") or config["hidden_size"] // config["num_attention_heads"]
    if head_dim not in CPU_HEAD_DIMS:
        return False, f"vLLM's CPU build has no attention for head_dim={head_dim}"
    weights = weights_bytes(model_dir)
    if weights < MIN_CPU_WEIGHTS_BYTES:
        return False, f"{weights / 2**20:.0f} MB of weights: on a CPU generate is as fast, with no engine start"
    return True, f"CPU, head_dim={head_dim}, {weights / 2**20:.0f} MB of weights"


class AutoSampler:
    """Picks hf or vllm at the first draw (it needs the model's config), then hands every call to it."""

    def __init__(self, sampler_cfg, model_cfg):
        self.sampler_cfg, self.model_cfg = sampler_cfg, model_cfg
        self.vllm_installed = has_vllm(sampler_cfg.vllm)
        self.chosen: HFSampler | VLLMSampler | None = None

    @property
    def name(self) -> str:
        return self.chosen.name if self.chosen is not None else "auto"

    @classmethod
    def check(cls, cfg: Any) -> None:
        HFSampler.check(cfg)  # the fallback is always possible; vLLM's section is checked when it is picked

    def choose(self, model_dir: str | Path) -> HFSampler | VLLMSampler:
        if self.chosen is None:
            runs, why = vllm_pays(model_dir) if self.vllm_installed else (False, "vLLM is not installed")
            backend = VLLMSampler if runs else HFSampler
            log.info("sampler=auto: using %s (%s)", backend.name, why)
            self.chosen = backend(self.sampler_cfg, self.model_cfg)
        return self.chosen

    def sample(
        self, model_dir: str | Path, shards: list[PromptShard], requests: list[SamplingRequest]
    ) -> Iterator[list[Samples]]:
        return self.choose(model_dir).sample(model_dir, shards, requests)

    def sample_loaded(self, model: Any, tokenizer: Any, prompts: list[str], request: SamplingRequest) -> Samples:
        # A model in memory is drawn by generate whichever backend was picked (as sampler=vllm does).
        return (self.chosen or HFSampler(self.sampler_cfg, self.model_cfg)).sample_loaded(
            model, tokenizer, prompts, request
        )

    def close(self) -> None:
        if self.chosen is not None:
            self.chosen.close()
