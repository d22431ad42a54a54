"""What one optimizer step computes, shared by every trainer: data order, lr schedule, micro-batch loss, logs.

The torch and DeepSpeed trainers differ only in who calls `backward` and `step`; the pairs each step
sees, the loss of each pair and the statistics logged come from here, so their runs can be compared.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import torch

from irpo.loss import LOSSES, compute_loss
from irpo.models.tokens import EncodedSequence, encode
from irpo.training.data import collate, sequence_logps
from irpo.training.lora import summary as lora_summary


@dataclass
class PairData:
    """Encoded pairs and, for preference losses, the reference model's log-probs of both sides."""

    chosen: list[EncodedSequence]
    rejected: list[EncodedSequence] | None
    uses_rejected: bool  # the loss needs rejected sequences (else they are only scored for the logs)
    reference: dict[str, torch.Tensor] | None = None


def encode_pairs(tokenizer, pairs: list[dict], loss_name: str) -> PairData:
    objective = LOSSES.get(loss_name)
    chosen = [encode(tokenizer, p["prompt"], p["chosen"]) for p in pairs]
    rejected = [encode(tokenizer, p["prompt"], p["rejected"]) for p in pairs] if "rejected" in pairs[0] else None
    if objective.uses_rejected and rejected is None:
        raise ValueError(f"loss '{objective.name}' needs (chosen, rejected) pairs; pairs.builder made none")
    return PairData(chosen, rejected, objective.uses_rejected)


@torch.no_grad()
def score_sequences(model, sequences: list[EncodedSequence], pad_id: int, device, chunk: int) -> torch.Tensor:
    """Summed response log-probs of each sequence, `chunk` sequences per forward pass, on the CPU."""
    values = [
        sequence_logps(model, to_device(collate(sequences[i : i + chunk], pad_id), device)).cpu()
        for i in range(0, len(sequences), chunk)
    ]
    return torch.cat(values) if values else torch.zeros(0)


def step_batches(num_pairs: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Pair indices for each step: seeded shuffles of all pairs, one epoch after another."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        epoch = list(range(num_pairs))
        rng.shuffle(epoch)
        order.extend(epoch)
    return [order[i * batch_size : (i + 1) * batch_size] for i in range(steps)]


def total_steps(trainer_cfg, num_pairs: int, max_steps: int | None) -> int:
    """`max_steps` when given (a retrain for the selected steps), else the step budget `trainer.max_steps`,
    cut to `trainer.epochs` passes over the pairs when an epoch cap is set."""
    if max_steps:
        return max_steps
    if trainer_cfg.epochs is None:
        return trainer_cfg.max_steps
    return min(trainer_cfg.max_steps, max(1, math.ceil(trainer_cfg.epochs * num_pairs / trainer_cfg.batch_size)))


def lr_multiplier(cfg, total_steps: int):
    """Linear warmup over `warmup_steps`, then constant or cosine decay to 0 at `total_steps`."""
    if cfg.lr_schedule not in ("constant", "cosine"):
        raise ValueError(f"unknown trainer.lr_schedule '{cfg.lr_schedule}'; valid schedules: constant, cosine")

    def multiplier(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return multiplier


def micro_batch_loss(model, idx: list[int], data: PairData, loss_cfg, pad_id: int, device):
    """Per-pair losses of the pairs `idx` (shape (len(idx),), with grad), their summed log stats, and tokens."""
    sequences = [data.chosen[i] for i in idx] + ([data.rejected[i] for i in idx] if data.uses_rejected else [])
    batch = to_device(collate(sequences, pad_id), device)
    logps = sequence_logps(model, batch)
    chosen_logps = logps[: len(idx)]
    rejected_logps = logps[len(idx) :] if data.uses_rejected else None
    if data.rejected is not None and not data.uses_rejected:
        with torch.no_grad():  # monitored only, as in the paper's SFT curves
            rejected_logps = sequence_logps(model, to_device(collate([data.rejected[i] for i in idx], pad_id), device))
    lengths = torch.tensor([data.chosen[i].response_length for i in idx], dtype=torch.float32, device=device)
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
    return terms.loss, sums, int(batch["attention_mask"].sum())


def train_summary(cfg, loss_cfg, steps: int, num_pairs: int, seconds: float, init_model_dir) -> dict:
    return {
        "steps": steps,
        "pairs": num_pairs,
        "loss": loss_cfg.name,
        "alpha": loss_cfg.alpha,
        "beta": loss_cfg.beta,
        "lr": cfg.lr,
        "batch_size": cfg.batch_size,
        "trainer": cfg.name,
        "seconds": round(seconds, 2),
        "init_model": str(init_model_dir),
        "selected_step": steps,
        "held_out_accuracy": None,
        "lora": lora_summary(cfg.lora),
    }


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}
