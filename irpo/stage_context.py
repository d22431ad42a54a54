"""What the stages of a run share (generate, pairs, evaluate, checkpoint scoring): built once by the loop."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from irpo.config import temperature_for
from irpo.pairs import Fits
from irpo.protocols import Sampler, SamplingRequest
from irpo.seeds import sampling_seed
from irpo.tasks import Task


@dataclass(frozen=True)
class StageContext:
    task: Task  # judges samples, and says where one ends (its stop rule)
    prompts: dict[str, str]  # every question's prompt as the model sees it (chat template applied), by id
    sampler: Sampler
    generation: Any  # the generation section: N, temperatures, top_p, token budget, stop strings
    shard_prompts: int  # sampler.shard_prompts: the stages write their rows in shards of this many prompts
    seed: int  # the run's seed; each stage derives its own (irpo.seeds)
    fits: Fits  # whether a prompt and a response fit model.max_length once encoded (pairs drop what does not)

    def request(self, num_samples: int, temperature: float, seed: int, desc: str, top_p: float | None = None):
        """A request with the run's token budget and stop strings and the task's stop rule."""
        return SamplingRequest(
            num_samples,
            temperature,
            self.generation.top_p if top_p is None else top_p,
            self.generation.max_new_tokens,
            seed,
            stop_rule=self.task.stop_rule(),
            stop=tuple(self.generation.stop),
            desc=desc,
        )

    def greedy_request(self, seed: int, desc: str = "greedy") -> SamplingRequest:
        return self.request(1, 0.0, seed, desc, top_p=1.0)

    def sampling_request(self, t: int, desc: str) -> SamplingRequest:
        """Step 1 of iteration t: N samples per prompt at the iteration's temperature."""
        temperature = temperature_for(self.generation, t)
        return self.request(self.generation.num_samples, temperature, sampling_seed(self.seed, t), desc)
