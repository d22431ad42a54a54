"""The optimizer steps every trainer takes: the micro-batch loss, the step loop and its log, the summary.

The torch and DeepSpeed trainers differ only in what a `StepBackend` does (who computes which pairs,
who calls `backward` and `step`, how the logged sums are gathered, what is saved after a step); the pairs
each step sees (irpo/training/batches.py), the loss of each pair and the statistics logged come from here,
so their runs can be compared.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from tqdm.auto import tqdm

from irpo.files import append_jsonl
from irpo.loss import compute_loss, nll_lengths
from irpo.models.precision import autocast
from irpo.protocols import Scorer
from irpo.training import lora
from irpo.training.logps import PairData, policy_logps
from irpo.training.resume import cut_log


def check_trainable(pairs: list[dict], scorer: Scorer | None, cfg, desc: str) -> None:
    """Training needs pairs; a scorer (checkpoint selection) needs an interval to score at."""
    if not pairs:
        raise ValueError(f"{desc}: no training pairs; nothing to train on (see pairs_stats.json)")
    if scorer is not None and cfg.eval_every <= 0:
        raise ValueError(f"{desc}: checkpoint selection (a scorer) needs trainer.eval_every > 0")


def micro_batch_loss(
    model, idx: list[int], data: PairData, loss_cfg, pad_id: int, device, step: list[int] | None = None
):
    """Per-pair losses of the pairs `idx` (shape (len(idx),), with grad), their summed log stats, and tokens
    (the tokens of the sequences the loss reads, prompts counted once per sequence whatever the packing).
    step: every pair of the optimizer step `idx` is part of (None: idx alone), for loss.nll_normalization=token."""
    chosen_logps, rejected_logps = policy_logps(model, idx, data, pad_id, device)
    lengths = nll_lengths(
        torch.tensor([data.chosen[i].response_length for i in idx], dtype=torch.float32, device=device),
        [data.chosen[i].response_length for i in (idx if step is None else step)],
        loss_cfg.nll_normalization,
    )
    reference = data.reference if data.uses_rejected else None
    terms = compute_loss(
        loss_cfg.name,
        beta=loss_cfg.beta,
        alpha=loss_cfg.alpha,
        policy_chosen_logps=chosen_logps,
        chosen_lengths=lengths,
        policy_rejected_logps=rejected_logps if data.uses_rejected else None,
        reference_chosen_logps=reference["chosen"][idx].to(device) if reference else None,
        reference_rejected_logps=reference["rejected"][idx].to(device) if reference else None,
    )
    parts = {"loss": terms.loss, "dpo": terms.dpo, "nll": terms.nll, "chosen_logps": chosen_logps}
    if rejected_logps is not None:
        parts["rejected_logps"] = rejected_logps
    if reference:
        parts.update(
            reward_accuracy=(terms.chosen_reward > terms.rejected_reward).float(),
            reward_margin=terms.chosen_reward - terms.rejected_reward,
        )
    sums = {key: float(value.detach().float().sum()) for key, value in parts.items()}
    sequences = [data.chosen[i] for i in idx]
    if data.uses_rejected and data.rejected is not None:
        sequences += [data.rejected[i] for i in idx]
    return terms.loss, sums, sum(len(s.input_ids) for s in sequences)


class StepBackend(Protocol):
    """What differs between trainers inside the step loop (`run_steps`)."""

    @property
    def is_main(self) -> bool:
        """This process writes the log and shows progress (rank 0)."""
        ...

    def share(self, batch: list[int]) -> list[int]:
        """The pairs of the step's batch that this process computes."""
        ...

    def backward(self, losses: torch.Tensor, batch_size: int) -> None:
        """Gradients of one micro-batch's per-pair `losses`, of a step over `batch_size` pairs in all."""
        ...

    def step(self) -> float | None:
        """The optimizer step once the batch's gradients are in; returns the gradient norm (None: unknown)."""
        ...

    def gather(self, sums: dict[str, float], tokens: int) -> tuple[dict[str, float], float]:
        """The logged sums and token count over every process."""
        ...

    def lr(self) -> float: ...

    def evaluate(self, step: int, stats: dict) -> None:
        """After the step, before it is logged: checkpoint selection may add its held-out score to `stats`."""
        ...

    def save(self, step: int) -> None:
        """After the step is logged: checkpoints."""
        ...


@dataclass(frozen=True)
class StepSettings:
    """How every step of one training run is computed and logged."""

    loss: Any  # the loss section: name, alpha, beta
    pad_id: int
    device: torch.device
    micro_batch_size: int  # pairs per forward pass; gradients accumulate over the step's batch
    log_path: Path  # train_log.jsonl: one row per step
    desc: str  # the progress bar's label
    autocast_to: torch.dtype | None = None  # forward passes under torch.autocast to this dtype (backward follows)


def run_steps(
    model, data: PairData, batches: list[list[int]], start_step: int, backend: StepBackend, settings: StepSettings
) -> None:
    """Steps start_step + 1 .. len(batches), each over the pairs `batches[step - 1]` in micro-batches, one
    optimizer step per batch; each step is one row of the log (first cut back to `start_step`): the batch
    means of the micro-batch statistics, lr, gradient norm, tokens per second."""
    if backend.is_main:
        cut_log(settings.log_path, start_step)
    with settings.log_path.open("a") if backend.is_main else contextlib.nullcontext() as log_file:
        progress = tqdm(
            batches[start_step:],
            desc=settings.desc,
            unit="step",
            leave=False,
            initial=start_step,
            total=len(batches),
            disable=not backend.is_main,
        )
        for step, batch in enumerate(progress, start=start_step + 1):
            stats = one_step(model, data, step, batch, backend, settings)
            backend.evaluate(step, stats)
            if log_file is not None:
                append_jsonl(log_file, stats)  # flushed: dashboards tail this file while training runs
            backend.save(step)


def one_step(model, data: PairData, step: int, batch: list[int], backend: StepBackend, settings: StepSettings) -> dict:
    """Optimizer step `step`, over the pairs `batch` in micro-batches; returns its log row."""
    started = time.perf_counter()
    mine = backend.share(batch)
    sums: dict[str, float] = {}
    tokens = 0
    for start in range(0, len(mine), settings.micro_batch_size):
        with autocast(settings.autocast_to, torch.device(settings.device)):
            losses, micro_sums, micro_tokens = micro_batch_loss(
                model,
                mine[start : start + settings.micro_batch_size],
                data,
                settings.loss,
                settings.pad_id,
                settings.device,
                step=batch,
            )
        backend.backward(losses, len(batch))
        tokens += micro_tokens
        for key, value in micro_sums.items():
            sums[key] = sums.get(key, 0.0) + value
    grad_norm = backend.step()
    totals, all_tokens = backend.gather(sums, tokens)
    stats: dict[str, float | None] = {key: value / len(batch) for key, value in totals.items()}
    stats.update(
        step=step,
        lr=backend.lr(),
        grad_norm=grad_norm,
        tokens_per_s=all_tokens / (time.perf_counter() - started),
    )
    return stats


def common_summary(cfg, loss_cfg, steps: int, num_pairs: int, seconds: float, init_model_dir) -> dict:
    """The fields of train_summary.json that every trainer writes (each adds its own)."""
    return {
        "steps": steps,
        "pairs": num_pairs,
        "loss": loss_cfg.name,
        "alpha": loss_cfg.alpha,
        "beta": loss_cfg.beta,
        "nll_normalization": loss_cfg.nll_normalization,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "logprob_chunk_size": cfg.logprob_chunk_size,
        "trainer": cfg.name,
        "seconds": round(seconds, 2),
        "init_model": str(init_model_dir),
        "selected_step": steps,
        "held_out_accuracy": None,
        "lora": lora.summary(cfg.lora),
    }
