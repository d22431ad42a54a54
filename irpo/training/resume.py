"""Mid-training checkpoints: a killed or preempted training stage continues from its last checkpoint.

A trainer writes into `<output>.tmp/` and publishes it as `<output>/` when done. While it trains, every
`trainer.save_every` steps it also writes `<output>.tmp/resume/`: weights, optimizer and lr-scheduler
state, the step (which is the position in the seeded data order), RNG states, the held-out scores so
far (and the best step's weights, with checkpoint selection) and the reference log-probs. A rerun of the
same stage finds it and continues; `train_log.jsonl` is cut back to the checkpoint's step, so it ends
with each step exactly once. Only the last checkpoint is kept.

The torch trainer's checkpoint is one file written under a temporary name and renamed into place, so
it is complete or absent. DeepSpeed writes its own (sharded) format under `resume/deepspeed/`, with the
same bookkeeping beside it in `resume/state.json`, written last.
"""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from typing import Any

import torch

from irpo.files import read_json, read_log, replacing, write_json, write_jsonl

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"  # torch trainer: everything in one file
STATE = "state.json"  # DeepSpeed: the bookkeeping, beside DeepSpeed's own checkpoint


class ResumeError(RuntimeError):
    """A stage's saved training state cannot be used; the message names the file and what to delete."""


def resume_dir(tmp_dir: Path) -> Path:
    return tmp_dir / "resume"


def job_identity(init_model_dir, num_pairs: int, steps: int, seed: int, desc: str, **extra: Any) -> dict:
    """What a checkpoint must match to be resumed: the same training job, not merely the same folder."""
    return {"init_model": str(init_model_dir), "pairs": num_pairs, "steps": steps, "seed": seed, "desc": desc, **extra}


def prepare_tmp_dir(tmp_dir: Path) -> bool:
    """Whether `tmp_dir` holds a checkpoint to resume from. It is kept when it does, or when its training
    finished (train_summary.json: DeepSpeed's checkpoint selection may still be due); else started afresh."""
    resume = resume_dir(tmp_dir)
    if (resume / CHECKPOINT).exists() or (resume / STATE).exists():
        return True
    if not (tmp_dir / "train_summary.json").exists():
        if tmp_dir.exists():
            shutil.rmtree(tmp_dir)
        tmp_dir.mkdir(parents=True)
    return False


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_torch_checkpoint(tmp_dir: Path, state: dict) -> int:
    """Writes resume/checkpoint.pt atomically (the previous checkpoint stays until the new one is whole);
    returns its size in bytes."""
    resume = resume_dir(tmp_dir)
    resume.mkdir(exist_ok=True)
    with replacing(resume / CHECKPOINT) as partial:  # a full disk or a kill mid-write: the last whole one stays
        torch.save(state, partial)
        return partial.stat().st_size


REQUIRED = ("identity", "step", "model", "optimizer", "scheduler", "rng", "scores", "best_step", "best_score")


def load_torch_checkpoint(tmp_dir: Path, identity: dict) -> dict:
    """The checkpoint in tmp_dir/resume/, checked against this job; a clear error when it is unusable."""
    path = resume_dir(tmp_dir) / CHECKPOINT
    hint = f"delete {resume_dir(tmp_dir)} to restart this training stage from step 0"
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated, corrupted, or from an incompatible torch
        raise ResumeError(f"{path} cannot be read ({type(e).__name__}: {e}); {hint}") from None
    missing = [key for key in REQUIRED if key not in state]
    if missing:
        raise ResumeError(f"{path} lacks {', '.join(missing)} (an incomplete checkpoint); {hint}")
    check_identity(path, state["identity"], identity, hint)
    return state


def check_identity(path: Path, saved: dict, expected: dict, hint: str) -> None:
    changed = sorted(k for k in set(saved) | set(expected) if saved.get(k) != expected.get(k))
    if changed:
        detail = ", ".join(f"{k}: {saved.get(k)!r} there, {expected.get(k)!r} now" for k in changed)
        raise ResumeError(f"{path} belongs to another training job ({detail}); {hint}")


def write_state(tmp_dir: Path, state: dict) -> None:
    """DeepSpeed's bookkeeping, written after DeepSpeed's own checkpoint is complete."""
    write_json(resume_dir(tmp_dir) / STATE, state)


def read_state(tmp_dir: Path, identity: dict) -> dict | None:
    path = resume_dir(tmp_dir) / STATE
    if not path.exists():
        return None
    hint = f"delete {resume_dir(tmp_dir)} to restart this training stage from step 0"
    try:
        state = read_json(path)
    except json.JSONDecodeError as e:
        raise ResumeError(f"{path} is not valid JSON ({e.msg}); {hint}") from None
    check_identity(path, state.get("identity", {}), identity, hint)
    return state


def cut_log(log_path: Path, step: int) -> None:
    """Keeps the log's lines up to `step`: the steps after the checkpoint are trained (and logged) again."""
    if log_path.exists():  # (a line being written when the run was killed is not read back)
        write_jsonl(log_path, [row for row in read_log(log_path) if row.get("step", 0) <= step])


def due(step: int, save_every: int, last_step: int) -> bool:
    """A checkpoint every `save_every` steps (0 = never), not at the last step (the model is saved then)."""
    return save_every > 0 and step % save_every == 0 and step < last_step
