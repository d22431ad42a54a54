"""Which pairs each optimizer step sees, and how many steps an iteration takes."""

from __future__ import annotations

import math
import random


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
