"""Step 1 of Figure 1: sample N chains of thought per training prompt from M_{t-1}."""

from __future__ import annotations

import logging

from irpo.rundir import IterationDir, read_jsonl, write_json, write_jsonl
from irpo.sampling import SamplingRequest

log = logging.getLogger(__name__)


def generate(it: IterationDir, model_dir, prompts: dict[str, str], sampler, request: SamplingRequest, task) -> list[dict]:
    """Writes generations.jsonl: one row per prompt with its `num_samples` completions."""
    if it.generations.exists():
        log.info("iter %d: generations exist, skipping generation", it.t)
        return read_jsonl(it.generations)
    ids = list(prompts)
    log.info("iter %d: sampling %d x %d at temperature %.2f from %s", it.t, len(ids), request.num_samples,
             request.temperature, model_dir)
    completions = sampler.generate(model_dir, [prompts[i] for i in ids], request, desc=f"iter {it.t} generate")
    rows = [{"id": i, "prompt": prompts[i], "temperature": request.temperature,
             "samples": [task.finish(c.text) for c in samples], "truncated": [c.truncated for c in samples]}
            for i, samples in zip(ids, completions, strict=True)]
    write_json(it.path / "generation_stats.json", sampler.last_stats)
    write_jsonl(it.generations, rows)
    return rows
