"""The vLLM sampler's child process: `python <this file> <work dir>`; one engine, many jobs.

A standalone script that imports only vLLM and the standard library, so it runs under any interpreter
that has vLLM (`sampler.vllm.python`, e.g. a venv with vLLM's own torch and transformers), irpo or not.
It starts the engine of work/engine.json, then draws each job work/jobs/<n>.json (n = 0, 1, ...) as it
appears, writing each shard's results to work/out/<n>/<shard>.json; it exits when work/stop appears or
its parent (the loop) is gone. The files come from `irpo.sampling.vllm_sampler`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def start_engine(engine: dict):
    from vllm import LLM

    if engine.get("enable_chunked_prefill") is None:
        import torch

        if torch.cuda.is_available():
            engine.pop("enable_chunked_prefill")
        else:  # seeded requests with a chunked prefill crash vLLM 0.32's CPU build
            engine["enable_chunked_prefill"] = False
    return LLM(**engine)


def draw_shard(llm, shard: dict) -> dict:
    """One shard's completions, cut-off flags and statistics, one entry per request."""
    from vllm import SamplingParams

    prompts = [{"prompt_token_ids": ids} for ids in shard["prompt_token_ids"]]
    completions, truncated, stats = [], [], []
    for request in shard["requests"]:
        began = time.perf_counter()
        params = [SamplingParams(**p) for p in request["params"]]
        outputs = llm.generate(prompts, params, use_tqdm=True) if prompts else []
        seconds = time.perf_counter() - began
        # vLLM may finish requests out of order; its outputs come back in the order of `prompts`.
        completions.append([[choice.text for choice in out.outputs] for out in outputs])
        # "length": vLLM stopped the sample at max_tokens (or the context's end), not the model.
        truncated.append([[choice.finish_reason == "length" for choice in out.outputs] for out in outputs])
        stats.append(
            {
                "sequences": sum(len(out.outputs) for out in outputs),
                "new_tokens": sum(len(choice.token_ids) for out in outputs for choice in out.outputs),
                "seconds": round(seconds, 3),
            }
        )
    return {"completions": completions, "truncated": truncated, "stats": stats}


def write_whole(path: str, value: dict) -> None:
    with open(path + ".tmp", "w") as f:
        json.dump(value, f)
    os.replace(path + ".tmp", path)


def next_job(work: Path, number: int, parent: int, poll_seconds: float = 0.1) -> dict | None:
    """Job `number` once it is there; None once told to stop, or when the parent that started us is gone."""
    path = work / "jobs" / f"{number:05d}.json"
    while not path.exists():
        if (work / "stop").exists() or os.getppid() != parent:
            return None
        time.sleep(poll_seconds)
    return json.loads(path.read_text())


def main(work_dir: str) -> None:
    # Run as a script, this file's folder heads sys.path; nothing there may shadow vLLM's own modules.
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
    work, parent = Path(work_dir), os.getppid()
    started = time.perf_counter()
    llm = start_engine(json.loads((work / "engine.json").read_text()))
    start = {"engine_started": True, "engine_start_seconds": round(time.perf_counter() - started, 1)}
    number = 0
    while (job := next_job(work, number, parent)) is not None:
        out = work / "out" / f"{number:05d}"
        out.mkdir(parents=True, exist_ok=True)
        for index, shard in enumerate(job["shards"]):
            write_whole(str(out / f"{index:05d}.json"), {**draw_shard(llm, shard), **start})
            start = {"engine_started": False, "engine_start_seconds": 0.0}  # reported once, with the first shard
        number += 1


if __name__ == "__main__":  # vLLM starts worker processes; they must not rerun this
    main(sys.argv[1])
