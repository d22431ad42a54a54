"""The seams between the loop and its backends: typing Protocols, with plain dataclasses in and out.

A new sampler is one class that satisfies `Sampler` (irpo/sampling/hf.py is the reference) and is
registered by name in irpo/sampling/__init__.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol, runtime_checkable

from irpo.tasks.base import FINAL_ANSWER


@dataclass(frozen=True)
class SamplingRequest:
    """What to draw; the same fields whichever backend draws it."""

    num_samples: int
    temperature: float  # 0 = greedy
    top_p: float
    max_new_tokens: int
    seed: int
    # Every backend ends a sample at the end of the line holding this text (irpo/sampling/answer_line.py).
    stop_after: str | None = FINAL_ANSWER
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
