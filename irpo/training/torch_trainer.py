"""A plain PyTorch trainer for DPO+NLL, DPO and SFT: the CPU default and the reference for others."""

from __future__ import annotations

import json
import logging
import math
import random
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import torch
from tqdm.auto import tqdm

from irpo.loss import LOSSES, compute_loss
from irpo.models.loading import load_model, load_tokenizer, pick_device
from irpo.rundir import publish_dir, write_json
from irpo.training.data import collate, encode, sequence_logps

log = logging.getLogger(__name__)


class TorchTrainer:
    def __init__(self, trainer_cfg, model_cfg):
        self.cfg = trainer_cfg
        self.model_cfg = model_cfg

    def train(self, init_model_dir: str | Path, pairs: list[dict], output_dir: Path, loss_cfg, seed: int,
              desc: str = "train", select: Optional[Callable] = None, max_steps: Optional[int] = None) -> dict:
        """Train from `init_model_dir` on `pairs` and save the result to `output_dir`.

        pairs: rows with "prompt", "chosen" and (for preference losses) "rejected"; rejected responses
        are scored and logged under any loss, so SFT runs show them too (the paper's Figure 2).
        The reference model is the initial model: its log-probs are computed once, before any update.
        select: score(model, tokenizer) on held-out data; with trainer.eval_every > 0, the weights of
        the best-scoring evaluation are the ones saved, and the step is recorded.
        """
        cfg = self.cfg
        if not pairs:
            raise ValueError(f"{desc}: no training pairs; nothing to train on (see pairs_stats.json)")
        objective = LOSSES.get(loss_cfg.name)
        device = pick_device(cfg.device)
        torch.manual_seed(seed)
        tokenizer = load_tokenizer(init_model_dir)
        model = load_model(init_model_dir, self.model_cfg.dtype, str(device))

        chosen = [encode(tokenizer, p["prompt"], p["chosen"]) for p in pairs]
        rejected = [encode(tokenizer, p["prompt"], p["rejected"]) for p in pairs] if "rejected" in pairs[0] else None
        if objective.uses_rejected and rejected is None:
            raise ValueError(f"loss '{objective.name}' needs (chosen, rejected) pairs; pairs.builder made none")
        reference = self._reference_logps(model, chosen, rejected, tokenizer.pad_token_id, device) \
            if objective.uses_rejected else None

        steps = max_steps or min(cfg.max_steps, max(1, math.ceil(cfg.epochs * len(pairs) / cfg.batch_size)))
        selecting = select is not None and cfg.eval_every > 0
        best = {"score": -1.0, "step": None, "state": None}
        scores: dict[int, float] = {}
        optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg, steps))
        order = _batches(len(pairs), cfg.batch_size, steps, seed)
        tmp_dir = output_dir.with_name(output_dir.name + ".tmp")
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        tmp_dir.mkdir(parents=True)

        model.train()
        started = time.perf_counter()
        with (tmp_dir / "train_log.jsonl").open("w") as log_file:
            for step, batch_indices in enumerate(tqdm(order, desc=desc, unit="step", leave=False), start=1):
                step_start = time.perf_counter()
                stats, tokens = self._step(model, batch_indices, chosen, rejected, reference, loss_cfg,
                                           tokenizer.pad_token_id, device)
                grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.max_grad_norm)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                stats.update(step=step, lr=schedule.get_last_lr()[0], grad_norm=float(grad_norm),
                             tokens_per_s=tokens / (time.perf_counter() - step_start))
                if selecting and (step % cfg.eval_every == 0 or step == steps):
                    scores[step] = stats["held_out_accuracy"] = select(model, tokenizer)
                    if scores[step] > best["score"]:  # ties keep the earlier, less-trained step
                        best = {"score": scores[step], "step": step,
                                "state": {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}}
                log_file.write(json.dumps(stats) + "\n")

        if selecting:
            model.load_state_dict(best["state"])

        model.save_pretrained(tmp_dir, safe_serialization=True)
        tokenizer.save_pretrained(tmp_dir)
        summary = {"steps": steps, "pairs": len(pairs), "loss": loss_cfg.name, "alpha": loss_cfg.alpha,
                   "beta": loss_cfg.beta, "lr": cfg.lr, "batch_size": cfg.batch_size,
                   "seconds": round(time.perf_counter() - started, 2), "init_model": str(init_model_dir),
                   "selected_step": best["step"] if selecting else steps,
                   "held_out_accuracy": scores or None}
        write_json(tmp_dir / "train_summary.json", summary)
        publish_dir(tmp_dir, output_dir)
        return summary

    @torch.no_grad()
    def _reference_logps(self, model, chosen, rejected, pad_id, device) -> dict[str, torch.Tensor]:
        model.eval()
        out = {}
        for name, sequences in (("chosen", chosen), ("rejected", rejected)):
            values = []
            for start in range(0, len(sequences), self.cfg.micro_batch_size * 2):
                batch = _to(collate(sequences[start:start + self.cfg.micro_batch_size * 2], pad_id), device)
                values.append(sequence_logps(model, batch).cpu())
            out[name] = torch.cat(values)
        return out

    def _step(self, model, batch_indices, chosen, rejected, reference, loss_cfg, pad_id, device):
        """One optimizer step's forward/backward, accumulated over micro-batches; returns the logged means."""
        totals: dict[str, float] = {}
        tokens = 0
        micro = self.cfg.micro_batch_size
        for start in range(0, len(batch_indices), micro):
            idx = batch_indices[start:start + micro]
            scored_rejected = reference is not None  # the loss needs the rejected sequences
            sequences = [chosen[i] for i in idx] + ([rejected[i] for i in idx] if scored_rejected else [])
            batch = _to(collate(sequences, pad_id), device)
            tokens += int(batch["attention_mask"].sum())
            logps = sequence_logps(model, batch)
            chosen_logps = logps[: len(idx)]
            rejected_logps = logps[len(idx):] if scored_rejected else None
            if rejected is not None and not scored_rejected:
                with torch.no_grad():  # monitored only, as in the paper's SFT curves
                    rejected_logps = sequence_logps(model, _to(collate([rejected[i] for i in idx], pad_id), device))
            lengths = torch.tensor([chosen[i].response_length for i in idx], dtype=torch.float32, device=device)
            terms = compute_loss(
                loss_cfg.name, beta=loss_cfg.beta, alpha=loss_cfg.alpha,
                policy_chosen_logps=chosen_logps, chosen_lengths=lengths,
                policy_rejected_logps=rejected_logps if scored_rejected else None,
                reference_chosen_logps=reference["chosen"][idx].to(device) if scored_rejected else None,
                reference_rejected_logps=reference["rejected"][idx].to(device) if scored_rejected else None,
            )
            (terms.loss.sum() / len(batch_indices)).backward()
            weight = len(idx) / len(batch_indices)
            parts = {"loss": terms.loss, "dpo": terms.dpo, "nll": terms.nll, "chosen_logps": chosen_logps}
            if rejected_logps is not None:
                parts["rejected_logps"] = rejected_logps
            if scored_rejected:
                parts.update(reward_accuracy=(terms.chosen_reward > terms.rejected_reward).float(),
                             reward_margin=terms.chosen_reward - terms.rejected_reward)
            for key, value in parts.items():
                totals[key] = totals.get(key, 0.0) + weight * float(value.detach().float().mean())
        return totals, tokens


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


def _batches(num_pairs: int, batch_size: int, steps: int, seed: int) -> list[list[int]]:
    """Indices for each step: seeded shuffles of all pairs, one epoch after another."""
    rng = random.Random(seed)
    order: list[int] = []
    while len(order) < steps * batch_size:
        epoch = list(range(num_pairs))
        rng.shuffle(epoch)
        order.extend(epoch)
    return [order[i * batch_size:(i + 1) * batch_size] for i in range(steps)]


def _to(batch: dict[str, torch.Tensor], device: torch.device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}
