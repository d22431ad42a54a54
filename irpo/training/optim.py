"""The model as trained and its optimizer: gradient checkpointing, LoRA adapters, AdamW and the lr schedule."""

from __future__ import annotations

import math

import torch

from irpo.training import lora
from irpo.training.checkpointing import enable_checkpointing

LR_SCHEDULES = ("constant", "cosine")


def check_lr_schedule(schedule: str) -> None:
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"unknown trainer.lr_schedule '{schedule}'; valid schedules: {', '.join(LR_SCHEDULES)}")


def lr_multiplier(cfg, total_steps: int):
    """Linear warmup over `warmup_steps`, then constant or cosine decay to 0 at `total_steps`."""
    check_lr_schedule(cfg.lr_schedule)

    def multiplier(step: int) -> float:
        if cfg.warmup_steps and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.lr_schedule == "cosine":
            progress = (step - cfg.warmup_steps) / max(1, total_steps - cfg.warmup_steps)
            return 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
        return 1.0

    return multiplier


def prepare_model(model, cfg, seed: int):
    """The model as trained: gradient checkpointing (under trainer.checkpoint_policy), and LoRA adapters (starting
    as the model itself, B = 0, so the reference log-probs are M_{t-1}'s) when trainer.lora is on."""
    if cfg.gradient_checkpointing:
        enable_checkpointing(model, cfg.checkpoint_policy)
    if lora.enabled(cfg.lora):
        model = lora.wrap(model, cfg.lora, seed, cfg.gradient_checkpointing)
    return model


def make_optimizer(model, cfg, steps: int):
    """(trained parameters, AdamW, lr schedule): the trained parameters are the adapters only, under LoRA."""
    trained = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trained, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return trained, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lr_multiplier(cfg, steps))
