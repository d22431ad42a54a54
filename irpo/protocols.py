"""The seams between the loop and its backends: what a sampler, a trainer, a scorer and a tracker must do.

A new backend is one class that satisfies one Protocol here, registered by name (`irpo.sampling.SAMPLERS`,
`irpo.training.TRAINERS`, `irpo.tracking.TRACKERS`). It may also define `check(cfg)` (`ChecksConfig`):
`irpo.config.validate` calls it for the chosen backend before any work, so the backend's own config
section (e.g. `trainer.deepspeed.*`) is checked by the code that reads it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from omegaconf import DictConfig

    from irpo.rundir import IterationDir


@runtime_checkable
class ChecksConfig(Protocol):
    """A registered part that checks its own config section (a staticmethod or classmethod on the class)."""

    def check(self, cfg: DictConfig) -> None:
        """Raise ValueError (or FileNotFoundError) naming the key when `cfg` (the whole composed config: a
        part reads its own section, and any other it depends on, e.g. `cluster.nodes`) cannot work."""
        ...


# --- Sampler -------------------------------------------------------------------------------------------
# The Sampler protocol lives here too; it is written on the sampling branch (issue 11, "fastsample").
# --- end Sampler ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    """One training step's weights, as a trainer can offer them for scoring: either saved (`model_dir`, a
    save_pretrained directory) or live in the trainer's memory (`model` and its `tokenizer`)."""

    step: int
    model_dir: Path | None = None
    model: Any = None  # a transformers (or PEFT-wrapped) causal LM, in eval-ready state
    tokenizer: Any = None

    def __post_init__(self) -> None:
        if (self.model_dir is None) == (self.model is None) or (self.model is None) != (self.tokenizer is None):
            raise ValueError("a Checkpoint is either saved (model_dir) or in memory (model and tokenizer)")


@runtime_checkable
class Scorer(Protocol):
    """Checkpoint selection (paper, Section 3.1): how good a training step's weights are, higher is better."""

    def score(self, checkpoint: Checkpoint) -> float:
        """The held-out score of `checkpoint`. Must not change the weights, nor the caller's random stream
        (the trainer goes on training after scoring a live model). Deterministic for the same weights."""
        ...


@runtime_checkable
class Trainer(Protocol):
    """Trains M_t from M_{t-1} on pairs; built as `Trainer(trainer_cfg, model_cfg, cluster_cfg)`."""

    def train(
        self,
        init_model_dir: str | Path,
        pairs: list[dict],
        output_dir: Path,
        loss_cfg: Any,
        seed: int,
        desc: str = "train",
        scorer: Scorer | None = None,
        max_steps: int | None = None,
    ) -> dict:
        """Train from `init_model_dir` (also the frozen reference) on `pairs` and publish the model to
        `output_dir`, with `train_summary.json` and the per-step log `irpo.training.workdir.TRAIN_LOG`.

        pairs: rows with "prompt", "chosen" and (for preference losses) "rejected".
        While it runs, the trainer writes into `irpo.training.workdir.work_dir(output_dir)`, its per-step
        log included (dashboards tail it), and renames that folder to `output_dir` when done; a killed call
        resumes from the checkpoint left there. With `scorer` and trainer.eval_every > 0, the best-scoring
        evaluated step's weights are the ones published (ties keep the earlier step), and the summary holds
        `selected_step` and `held_out_accuracy` ({step: score}). `max_steps` overrides the step budget.
        Returns the summary written to `train_summary.json`. Same seed, pairs and config: same weights.
        """
        ...


@runtime_checkable
class Tracker(Protocol):
    """A dashboard that mirrors the run directory; used as `with build_tracker(cfg, run_dir) as tracker:`."""

    def watch_training(self, it: IterationDir, train_log: Path) -> AbstractContextManager[Any]:
        """Context around iteration `it`'s training: the rows appended to `train_log` (JSON lines with "step")
        reach the dashboard while training runs. The training stage says where its log is."""
        ...

    def log_iteration(self, it: IterationDir) -> None:
        """Logs a finished iteration (its metrics.json and what it points to) once; again is a no-op."""
        ...

    def finish(self) -> None:
        """Closes the dashboard's run."""
        ...

    def __enter__(self) -> Tracker: ...

    def __exit__(self, *exc: object) -> None: ...
