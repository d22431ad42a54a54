"""Step 1 of Figure 1: sample N chains of thought per training prompt from M_{t-1}."""

from __future__ import annotations

import logging
from functools import reduce
from operator import add

from irpo.files import write_json
from irpo.protocols import SamplingStats
from irpo.rundir import IterationDir
from irpo.shards import ShardedFile
from irpo.stage_context import StageContext

log = logging.getLogger(__name__)


def generate(it: IterationDir, model_dir, ids: list[str], ctx: StageContext) -> list[dict]:
    """Writes generations.jsonl: one row per prompt of `ids` with its N completions, drawn in shards of
    `ctx.shard_prompts` prompts (irpo.shards), so a killed stage resumes at its first missing shard."""
    what = f"iter {it.t} generate"
    request = ctx.sampling_request(it.t, desc=what)
    stage = ShardedFile(it.generations, ids, ctx.shard_prompts)
    if not it.generations.exists():
        log.info(
            "iter %d: sampling %d x %d at temperature %.2f from %s in %d shards",
            it.t,
            len(ids),
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
                "prompt": ctx.prompts[i],
                "temperature": request.temperature,
                "samples": [ctx.task.finish(c.text) for c in samples],
                "truncated": [c.truncated for c in samples],
            }
            for i, samples in zip(shard.ids, results[0].completions, strict=True)
        ]

    rows = stage.draw(ctx.prompts, ctx.sampler, model_dir, [request], make_rows, what=what)
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
