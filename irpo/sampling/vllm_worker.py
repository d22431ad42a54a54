"""The vLLM sampler's child process: `python <this file> spec.json <out dir>`.

A standalone script that imports only vLLM and the standard library, so it runs under any interpreter
that has vLLM (`sampler.python`, e.g. a venv with vLLM's own torch and transformers), irpo or not.
The spec comes from `irpo.sampling.vllm_sampler.VLLMSampler`.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main(spec_path: str, out_dir: str) -> None:
    """Draws each shard of the spec in turn and writes its results to out_dir/<shard>.json (whole, by rename)
    as soon as they are drawn, so the caller saves a shard while the engine draws the next one."""
    # Run as a script, this file's folder heads sys.path; nothing there may shadow vLLM's own modules.
    sys.path = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]
    from vllm import LLM, SamplingParams

    spec = json.loads(Path(spec_path).read_text())
    engine = spec["engine"]
    if engine.get("enable_chunked_prefill") is None:
        import torch

        if torch.cuda.is_available():
            engine.pop("enable_chunked_prefill")
        else:  # seeded requests with a chunked prefill crash vLLM 0.32's CPU build
            engine["enable_chunked_prefill"] = False
    started = time.perf_counter()
    llm = LLM(**engine)
    engine_seconds = time.perf_counter() - started
    os.makedirs(out_dir, exist_ok=True)
    for number, shard in enumerate(spec["shards"]):
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
            new_tokens = sum(len(choice.token_ids) for out in outputs for choice in out.outputs)
            stats.append(
                {
                    "sequences": sum(len(out.outputs) for out in outputs),
                    "new_tokens": new_tokens,
                    "seconds": round(seconds, 2),
                    "tokens_per_s": round(new_tokens / max(seconds, 1e-9), 1),
                }
            )
        out_path = os.path.join(out_dir, f"{number:05d}.json")
        with open(out_path + ".tmp", "w") as f:  # the engine started once: its seconds go with the first shard
            json.dump(
                {
                    "completions": completions,
                    "truncated": truncated,
                    "stats": stats,
                    "engine_start_seconds": round(engine_seconds, 1) if number == 0 else 0.0,
                },
                f,
            )
        os.replace(out_path + ".tmp", out_path)


if __name__ == "__main__":  # vLLM starts worker processes; they must not rerun this
    main(sys.argv[1], sys.argv[2])
