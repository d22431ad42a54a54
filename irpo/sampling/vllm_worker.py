"""The vLLM sampler's child process: `python -m irpo.sampling.vllm_worker spec.json out.json`.

It may run under another interpreter (`sampler.python`, a venv with vLLM's own torch and transformers):
it needs only those, which vLLM brings, and this checkout on PYTHONPATH. The spec comes from
`irpo.sampling.vllm.VLLMSampler`.
"""

from __future__ import annotations

import json
import os
import sys
import time


def main(spec_path: str, out_path: str) -> None:
    from vllm import LLM, SamplingParams

    spec = json.loads(open(spec_path).read())
    started = time.perf_counter()
    llm = LLM(**spec["engine"])
    engine_seconds = time.perf_counter() - started
    prompts = [{"prompt_token_ids": ids} for ids in spec["prompt_token_ids"]]
    completions, stats = [], []
    for request in spec["requests"]:
        began = time.perf_counter()
        params = [SamplingParams(**p) for p in request["params"]]
        outputs = llm.generate(prompts, params, use_tqdm=True) if prompts else []
        seconds = time.perf_counter() - began
        # vLLM may finish requests out of order; its outputs come back in the order of `prompts`.
        completions.append([[choice.text for choice in out.outputs] for out in outputs])
        new_tokens = sum(len(choice.token_ids) for out in outputs for choice in out.outputs)
        stats.append({"sequences": sum(len(out.outputs) for out in outputs), "new_tokens": new_tokens,
                      "seconds": round(seconds, 2), "tokens_per_s": round(new_tokens / max(seconds, 1e-9), 1)})
    tmp = out_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump({"completions": completions, "stats": stats, "engine_start_seconds": round(engine_seconds, 1)}, f)
    os.replace(tmp, out_path)


if __name__ == "__main__":  # vLLM starts worker processes; they must not rerun this
    main(sys.argv[1], sys.argv[2])
