"""Where a trainer writes while it runs: one fact, read by the trainers and by the training stage that tells
the dashboard where to look (irpo/train.py, irpo/tracking.py)."""

from __future__ import annotations

from pathlib import Path

TRAIN_LOG = "train_log.jsonl"  # one JSON line per optimizer step, in the work dir and then in the model dir


def work_dir(output_dir: Path) -> Path:
    """The folder a trainer fills (log, checkpoints, weights) and renames to `output_dir` when done."""
    return output_dir.with_name(output_dir.name + ".tmp")


def live_train_log(output_dir: Path) -> Path:
    """The per-step log of a training run into `output_dir`, while it runs."""
    return work_dir(output_dir) / TRAIN_LOG
