"""Step 1 of Figure 1: sample N chains of thought per training prompt from M_{t-1}."""

from __future__ import annotations

import logging
from dataclasses import replace
from functools import reduce
from operator import add

from irpo.protocols import Sampler, SamplingRequest, SamplingStats
from irpo.rundir import IterationDir, write_json
from irpo.shards import ShardedFile

log = logging.getLogger(__name__)


def generate(
    it: IterationDir,
    model_dir,
    prompts: dict[str, str],
    sampler: Sampler,
    request: SamplingRequest,
    task,
    shard_prompts: int,
) -> list[dict]:
    """Writes generations.jsonl: one row per prompt with its `num_samples` completions, drawn in shards of
    `shard_prompts` prompts (irpo.shards), so a killed stage resumes at its first missing shard."""
    stage = ShardedFile(it.generations, list(prompts), shard_prompts)
    if not it.generations.exists():
        log.info(
            "iter %d: sampling %d x %d at temperature %.2f from %s in %d shards",
            it.t,
            len(prompts),
            request.num_samples,
            request.temperature,
            model_dir,
            len(stage.shards),
        )
    shard_stats: list[SamplingStats] = []

    def make_rows(shard, results) -> list[dict]:
        shard_stats.append(results[0].stats)
        return [
            {
                "id": i,
                "prompt": prompts[i],
                "temperature": request.temperature,
                "samples": [task.finish(c.text) for c in samples],
                "truncated": [c.truncated for c in samples],
            }
            for i, samples in zip(shard.ids, results[0].completions, strict=True)
        ]

    what = f"iter {it.t} generate"
    rows = stage.draw(prompts, sampler, model_dir, [replace(request, desc=what)], make_rows, what=what)
    if shard_stats:
        total = reduce(add, shard_stats)
        log.info(
            "%s: %s drew %d new tokens at %.1f tokens/s", what, total.backend, total.new_tokens, total.tokens_per_s
        )
        write_json(
            it.path / "generation_stats.json",
            {**total.as_dict(), "shards": len(stage.shards), "shards_drawn_by_this_run": len(shard_stats)},
        )
    return rows
