"""Step 1 of Figure 1: sample N chains of thought per training prompt from M_{t-1}."""

from __future__ import annotations

import logging

from irpo.files import write_json
from irpo.rundir import IterationDir
from irpo.sampling import SamplingRequest
from irpo.shards import ShardedFile

log = logging.getLogger(__name__)


def generate(
    it: IterationDir, model_dir, prompts: dict[str, str], sampler, request: SamplingRequest, task, shard_prompts: int
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
    shard_stats: list[dict] = []

    def make_rows(shard, results) -> list[dict]:
        shard_stats.append(dict(sampler.last_stats))
        return [
            {
                "id": i,
                "prompt": prompts[i],
                "temperature": request.temperature,
                "samples": [task.finish(c.text) for c in samples],
                "truncated": [c.truncated for c in samples],
            }
            for i, samples in zip(shard.ids, results[0], strict=True)
        ]

    rows = stage.draw(
        prompts, sampler, model_dir, [request], [f"iter {it.t} generate"], make_rows, what=f"iter {it.t} generate"
    )
    if shard_stats:
        write_json(
            it.path / "generation_stats.json",
            {**sum_stats(shard_stats), "shards": len(stage.shards), "shards_drawn_by_this_run": len(shard_stats)},
        )
    return rows


def sum_stats(parts: list[dict]) -> dict:
    """A sampler's `last_stats` of several calls as one: counts and seconds add up, the rate is recomputed."""
    total = {key: round(sum(p.get(key, 0) for p in parts), 2) for key in parts[0] if key != "tokens_per_s"}
    if "new_tokens" in total and "seconds" in total:
        total["tokens_per_s"] = round(total["new_tokens"] / max(total["seconds"], 1e-9), 1)
    return total
