"""The training steps every trainer takes: data order, lr schedule, micro-batch loss, the step loop, logs.

The torch and DeepSpeed trainers differ only in what a `StepBackend` does (who computes which pairs,
who calls `backward` and `step`, how the logged sums are gathered, what is saved after a step); the pairs
each step sees, the loss of each pair and the statistics logged come from here, so their runs can be compared.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from tqdm.auto import tqdm

from irpo.files import append_jsonl
from irpo.loss import LOSSES, compute_loss, nll_lengths
from irpo.models.precision import autocast
from irpo.models.tokens import EncodedSequence, encode
from irpo.training import lora
from irpo.training.data import collate, sequence_logps
from irpo.training.packing import check_packing, pair_groups, response_logps, single_groups
from irpo.training.resume import cut_log


@dataclass
class PairData:
    """Encoded pairs and, for preference losses, the reference model's log-probs of both sides."""

    chosen: list[EncodedSequence]
    rejected: list[EncodedSequence] | None
    uses_rejected: bool  # the loss needs rejected sequences (else they are only scored for the logs)
    reference: dict[str, torch.Tensor] | None = None
    packing: str = "padded"  # trainer.packing: how forward passes lay the sequences out (irpo/training/packing.py)
    logprob_chunk_size: int = 0  # trainer.logprob_chunk_size: 0 = full logits (irpo/training/logprobs.py)


def encode_pairs(
    tokenizer, pairs: list[dict], loss_name: str, packing: str = "padded", logprob_chunk_size: int = 0
) -> PairData:
    check_packing(packing)
    objective = LOSSES.get(loss_name)
    chosen = [encode(tokenizer, p["prompt"], p["chosen"]) for p in pairs]
    rejected = [encode(tokenizer, p["prompt"], p["rejected"]) for p in pairs] if "rejected" in pairs[0] else None
    if objective.uses_rejected and rejected is None:
        raise ValueError(f"loss '{objective.name}' needs (chosen, rejected) pairs; pairs.builder made none")
    return PairData(chosen, rejected, objective.uses_rejected, packing=packing, logprob_chunk_size=logprob_chunk_size)


@torch.no_grad()
def score_sequences(
    model,
    sequences: list[EncodedSequence],
    pad_id: int,
    device,
    chunk: int,
    packing: str = "padded",
    logprob_chunk_size: int = 0,
) -> torch.Tensor:
    """Summed response log-probs of each sequence, `chunk` sequences per forward pass, on the CPU."""
    values = [
        separate_logps(model, sequences[i : i + chunk], packing, pad_id, device, logprob_chunk_size).cpu()
        for i in range(0, len(sequences), chunk)
    ]
    return torch.cat(values) if values else torch.zeros(0)


@torch.no_grad()
def reference_logps(model, data: PairData, pad_id: int, device, chunk: int) -> dict[str, torch.Tensor]:
    """Summed response log-probs of both sides of every pair (on the CPU), `chunk` sequences per forward;
    with shared-prompt packing each pair's prompt is computed once."""
    if data.rejected is None:
        raise ValueError("reference log-probs are for preference pairs, and these pairs have no rejected side")
    if data.packing == "padded":
        return {
            side: score_sequences(model, sequences, pad_id, device, chunk, logprob_chunk_size=data.logprob_chunk_size)
            for side, sequences in (("chosen", data.chosen), ("rejected", data.rejected))
        }
    per_forward = max(1, chunk // 2)
    values = [
        response_logps(
            model,
            pair_groups(data.chosen[i : i + per_forward], data.rejected[i : i + per_forward]),
            pad_id,
            device,
            data.logprob_chunk_size,
        ).cpu()
        for i in range(0, len(data.chosen), per_forward)
    ]
    both = torch.cat(values)  # chosen and rejected of each pair, alternating
    return {"chosen": both[0::2], "rejected": both[1::2]}


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


def prepare_model(model, cfg, seed: int):
    """The model as trained: gradient checkpointing, and LoRA adapters (starting as the model itself, B = 0,
    so the reference log-probs are M_{t-1}'s) when trainer.lora is on."""
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if lora.enabled(cfg.lora):
        model = lora.wrap(model, cfg.lora, seed, cfg.gradient_checkpointing)
    return model


def make_optimizer(model, cfg, steps: int):
    """(trained parameters, AdamW, lr schedule): the trained parameters are the adapters only, under LoRA."""
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return trained, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg, steps))


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


def policy_logps(model, idx: list[int], data: PairData, pad_id: int, device):
    """Summed response log-probs of the chosen and rejected sides of pairs `idx`, each (len(idx),): with
    grad where the loss reads them; rejected without grad (monitored only, as in the paper's SFT curves)
    when the loss does not, and None when there are no rejected responses."""
    chosen = [data.chosen[i] for i in idx]
    rejected = [data.rejected[i] for i in idx] if data.rejected is not None else None
    if data.uses_rejected and rejected is None:
        raise ValueError("the loss compares chosen with rejected responses, and these pairs have none")
    if data.uses_rejected and rejected is not None and data.packing == "shared_prompt":
        both = response_logps(model, pair_groups(chosen, rejected), pad_id, device, data.logprob_chunk_size)
        return both[0::2], both[1::2]
    if data.uses_rejected and rejected is not None:
        both = separate_logps(model, chosen + rejected, data.packing, pad_id, device, data.logprob_chunk_size)
        return both[: len(idx)], both[len(idx) :]
    chosen_logps = separate_logps(model, chosen, data.packing, pad_id, device, data.logprob_chunk_size)
    if rejected is None:
        return chosen_logps, None
    with torch.no_grad():
        return chosen_logps, separate_logps(model, rejected, data.packing, pad_id, device, data.logprob_chunk_size)


def separate_logps(
    model, sequences: list[EncodedSequence], packing: str, pad_id: int, device, logprob_chunk_size: int = 0
) -> torch.Tensor:
    """Summed response log-probs of each sequence scored alone: a right-padded batch, or packed rows."""
    if packing == "padded":
        return sequence_logps(model, to_device(collate(sequences, pad_id), device), logprob_chunk_size)
    return response_logps(model, single_groups(sequences), pad_id, device, logprob_chunk_size)


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


def run_steps(
    model,
    data: PairData,
    loss_cfg,
    pad_id: int,
    device,
    batches: list[list[int]],
    start_step: int,
    micro_batch_size: int,
    backend: StepBackend,
    log_path: Path,
    desc: str,
    autocast_to: torch.dtype | None = None,
) -> None:
    """Steps start_step + 1 .. len(batches), each over the pairs `batches[step - 1]` in micro-batches, one
    optimizer step per batch; each step is one row of `log_path` (train_log.jsonl, first cut back to
    `start_step`): the batch means of the micro-batch statistics, lr, gradient norm, tokens per second.
    autocast_to: the forward passes run under torch.autocast to this dtype (backward follows the forward's)."""
    if backend.is_main:
        cut_log(log_path, start_step)
    with log_path.open("a") if backend.is_main else contextlib.nullcontext() as log_file:
        progress = tqdm(
            batches[start_step:],
            desc=desc,
            unit="step",
            leave=False,
            initial=start_step,
            total=len(batches),
            disable=not backend.is_main,
        )
        for step, batch in enumerate(progress, start=start_step + 1):
            step_start = time.perf_counter()
            mine = backend.share(batch)
            sums: dict[str, float] = {}
            tokens = 0
            for start in range(0, len(mine), micro_batch_size):
                with autocast(autocast_to, torch.device(device)):
                    losses, micro_sums, micro_tokens = micro_batch_loss(
                        model, mine[start : start + micro_batch_size], data, loss_cfg, pad_id, device, step=batch
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
                tokens_per_s=all_tokens / (time.perf_counter() - step_start),
            )
            backend.evaluate(step, stats)
            if log_file is not None:
                append_jsonl(log_file, stats)  # flushed: dashboards tail this file while training runs
            backend.save(step)


def train_summary(cfg, loss_cfg, steps: int, num_pairs: int, seconds: float, init_model_dir) -> dict:
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


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}
