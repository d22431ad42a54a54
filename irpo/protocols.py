"""The seams between the loop and its backends: what a sampler, a trainer, a scorer and a tracker must do,
with plain dataclasses in and out.

A new backend is one class that satisfies one Protocol here, registered by name (`irpo.sampling.SAMPLERS`,
`irpo.training.TRAINERS`, `irpo.tracking.TRACKERS`); `irpo/sampling/hf.py` and
`irpo/training/torch_trainer.py` are the references. It may also define `check(cfg)` (`ChecksConfig`):
`irpo.config.validate` calls it for the chosen backend before any work, so the backend's own config
section (e.g. `trainer.deepspeed.*`) is checked by the code that reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, runtime_checkable

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


class StopRule(Protocol):
    """Where a sample ends, as its task says (`irpo.tasks.answer_line.AnswerLine`: the end of the line that holds
    the answer after the task's marker). Samplers stop there, or cut there what ran on."""

    @property
    def marker(self) -> str:
        """The text after which the sample's answer comes."""
        ...

    @property
    def end_chars(self) -> tuple[str, ...]:
        """A sample can end only after a token that holds one of these."""
        ...

    def finished(self, text: str) -> bool:
        """Whether `text` has reached the end the rule sets."""
        ...

    def answered(self, after_marker: str) -> bool:
        """Whether the text after the marker has reached that end."""
        ...

    def cut(self, text: str) -> str:
        """`text` up to that end (all of it when it never reaches it)."""
        ...


@dataclass(frozen=True)
class SamplingRequest:
    """What to draw; the same fields whichever backend draws it."""

    num_samples: int
    temperature: float  # 0 = greedy
    top_p: float
    max_new_tokens: int
    seed: int
    stop_rule: StopRule | None = None  # the task's (`Task.stop_rule`): every backend ends a sample there
    stop: tuple[str, ...] = ()  # stop at any of these strings (kept in the output), every backend
    desc: str = "sample"  # the progress bar's label


@dataclass(frozen=True)
class Completion:
    """One sample: the text after the prompt, and whether the sampler cut it off (token budget or the
    context's end) before the model ended it with EOS, a stop string or a finished answer line."""

    text: str
    truncated: bool = False


class PromptShard(NamedTuple):
    """Consecutive prompts of a stage, drawn in one go. Samplers seed from each prompt's index in the stage
    (`first_index` + its place here), so a prompt's samples do not depend on how the stage was split."""

    first_index: int
    prompts: list[str]


@dataclass
class SamplingStats:
    """What one draw cost. Counts and seconds add up over draws (`+`); the rate is recomputed."""

    backend: str
    sequences: int = 0
    new_tokens: int = 0
    truncated: int = 0
    prompts_too_long: int = 0
    seconds: float = 0.0
    engine_starts: int = 0  # engines (vLLM) started for this draw; 0 = one already running served it
    engine_start_seconds: float = 0.0

    @property
    def tokens_per_s(self) -> float:
        return round(self.new_tokens / max(self.seconds, 1e-9), 1)

    def __add__(self, other: SamplingStats) -> SamplingStats:
        backend = self.backend if self.backend == other.backend else f"{self.backend}+{other.backend}"
        sums = {k: v + getattr(other, k) for k, v in asdict(self).items() if k != "backend"}
        return SamplingStats(backend, **sums)

    def as_dict(self) -> dict[str, Any]:
        row = asdict(self)
        row["seconds"] = round(self.seconds, 2)
        row["engine_start_seconds"] = round(self.engine_start_seconds, 1)
        return {**row, "tokens_per_s": self.tokens_per_s}


@dataclass
class Samples:
    """One request's draw: `completions[i]` holds the request's `num_samples` completions of prompt i."""

    completions: list[list[Completion]]
    stats: SamplingStats = field(default_factory=lambda: SamplingStats("none"))


@runtime_checkable
class Sampler(Protocol):
    """Turns a model and prompts into N completions per prompt, with what the draw cost.

    `sample` loads the model from its directory (or reuses an engine already serving that directory) and
    yields, shard by shard as soon as each is drawn, one `Samples` per request. `sample_loaded` draws from a
    model already in memory (checkpoint selection with trainer=torch) and leaves the caller's random state
    as it was. `close` frees whatever the sampler holds (an engine's memory); a later call starts again.
    """

    name: str

    @classmethod
    def check(cls, cfg: Any) -> None:
        """Fails early on a bad `sampler.<name>` section or a backend that is not installed (cfg: the root config)."""
        ...

    def sample(
        self, model_dir: str | Path, shards: list[PromptShard], requests: list[SamplingRequest]
    ) -> Iterator[list[Samples]]: ...

    def sample_loaded(self, model: Any, tokenizer: Any, prompts: list[str], request: SamplingRequest) -> Samples: ...

    def close(self) -> None: ...


# --- Trainer, Scorer, Tracker ---------------------------------------------------------------------------


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
        pairs: list[dict[str, Any]],
        output_dir: Path,
        loss_cfg: Any,
        seed: int,
        desc: str = "train",
        scorer: Scorer | None = None,
        max_steps: int | None = None,
    ) -> dict[str, Any]:
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
