"""What every sampler takes (a request) and gives back (completions), whichever backend draws them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple


@dataclass(frozen=True)
class SamplingRequest:
    """What to draw; the same fields whichever backend draws it."""

    num_samples: int
    temperature: float  # 0 = greedy
    top_p: float
    max_new_tokens: int
    seed: int
    stop_after: str | None = "Final answer:"  # hf: stop at the end of the line holding this text
    stop: tuple[str, ...] = ()  # stop at any of these strings (kept in the output), every backend


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
