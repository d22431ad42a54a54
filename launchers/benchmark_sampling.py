"""Sampling speed side by side in one run: bare transformers `generate` vs irpo's samplers, N samples a prompt.

    python launchers/benchmark_sampling.py [--models tiny smollm2] [--prompts 4] [--samples 8]
        [--max-new-tokens 128] [--repeats 3] [--threads 2] [--vllm-python /path/to/vllm-venv/bin/python]
        [--skip-engine-starts]

Per model, on the same prompts (the embedded task's for the tiny model, GSM8K's test questions in the chat
template for SmolLM2-135M-Instruct), the same budget and temperature 0.8, with the answer-line stop off so
every arm draws to EOS or the budget:
- `generate`: plain `model.generate`, 16 sequences a call (2 prompts x 8 samples), as issue 13 measured it,
  in model.dtype (float32); `generate, bfloat16`: the same with the weights in bfloat16 (--arms);
- `hf (loop)`: sampler=hf as the default runs it (`sampler.hf.decoder=loop`, irpo/sampling/decode.py; weights
  in `sampler.hf.dtype=auto`'s pick: bfloat16 for SmolLM2 on a CPU with bf16 instructions, float32 for tiny);
- `hf, generate`: sampler=hf through transformers' generate (`sampler.hf.decoder=generate`, the reference);
- `hf, generate + shared prefill`: the same with `sampler.hf.shared_prefill=true` (each prompt run once, its
  cache copied to its N samples);
- `vllm`: sampler=vllm (vLLM's CPU build, prefix caching on), given an interpreter that has vLLM.
tokens/s is generated tokens over drawing time (vLLM's engine start is reported apart). Repeat r draws its
own set of `--prompts` prompts in every arm, one arm after another (no arm meets a set twice, so no cache
carries over); each ratio is taken within a repeat, against bare `generate` on the same prompts minutes
apart at most, and the table gives the medians and the spreads (min-max) over the repeats. Then one iteration's
sampling stages with sampler=vllm count engine starts: M_t's evaluation then iteration t+1's samples,
once stopping the engine after every stage (as before) and once as the loop runs now.

`main(argv)` is the entry point (launchers/benchmark_speed.py --part sample calls it).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MODELS = {"tiny": [], "smollm2": ["model=smollm2_135m_instruct"]}
BARE_BATCH = 16  # sequences a generate call, as issue 13's 55 tokens/s was measured


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from irpo.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=["run_dir=/tmp/unused", *overrides])


def model_and_prompts(model: str, num_prompts: int, shared: Path) -> tuple[object, str, list[str]]:
    """(config, M0's directory, prompts rendered as the loop renders them)."""
    from irpo.models.loading import load_tokenizer
    from irpo.models.tokens import render_prompt
    from irpo.seed_model import prepare_seed_model
    from irpo.tasks import build_task

    task_overrides = [] if model == "tiny" else ["task=gsm8k", f"task.data_dir={shared}/datasets/gsm8k"]
    cfg = compose(*MODELS[model], *task_overrides)
    task = build_task(cfg.task)
    model_dir = prepare_seed_model(cfg, task)
    tokenizer = load_tokenizer(model_dir)
    examples = task.load_splits().test[:num_prompts]
    return cfg, model_dir, [render_prompt(task, e, tokenizer, cfg.model.use_chat_template) for e in examples]


def bare_generate(
    model_dir: str, prompts: list[str], samples: int, max_new_tokens: int, dtype: str
) -> tuple[int, float]:
    """(new tokens, seconds): plain `generate`, BARE_BATCH sequences a call, left-padded, sampled at 0.8."""
    import torch

    from irpo.models.loading import load_model, load_tokenizer
    from irpo.models.tokens import encode_prompt

    tokenizer, model = load_tokenizer(model_dir), load_model(model_dir, dtype, "cpu")
    per_call = max(1, BARE_BATCH // samples)
    new_tokens, started = 0, time.perf_counter()
    with torch.no_grad():
        for start in range(0, len(prompts), per_call):
            encoded = [encode_prompt(tokenizer, p) for p in prompts[start : start + per_call]]
            width = max(map(len, encoded))
            pad = tokenizer.pad_token_id
            output = model.generate(
                input_ids=torch.tensor([[pad] * (width - len(e)) + e for e in encoded]),
                attention_mask=torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in encoded]),
                do_sample=True,
                temperature=0.8,
                top_p=1.0,
                top_k=None,
                num_return_sequences=samples,
                max_new_tokens=max_new_tokens,
                pad_token_id=pad,
            )
            new_tokens += int((output[:, width:] != pad).sum())
    return new_tokens, time.perf_counter() - started


def sampler_arm(cfg, backend: str, args, model_dir: str, *overrides: str):
    """A sampler=`backend` kept over the repeats (vLLM's engine starts once): a function drawing some prompts
    and returning (new tokens, seconds, engine start seconds), and the sampler (to close)."""
    from irpo.sampling import SamplingRequest, build_sampler, sample_all

    extra = vllm_overrides(args) if backend == "vllm" else []
    sampler = build_sampler(
        compose(*MODELS[args.model_name], f"sampler={backend}", *extra, *overrides).sampler, cfg.model
    )
    request = SamplingRequest(args.samples, 0.8, 1.0, args.max_new_tokens, seed=0, desc=backend)

    def draw(prompts: list[str]) -> tuple[int, float, float]:
        (drawn,) = sample_all(sampler, model_dir, prompts, [request])
        return drawn.stats.new_tokens, drawn.stats.seconds, drawn.stats.engine_start_seconds

    return draw, sampler


def vllm_overrides(args) -> list[str]:
    return [f"sampler.vllm.python={args.vllm_python}", "sampler.vllm.gpu_memory_utilization=0.3"]


def summary(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "runs": values}


def engine_starts_per_iteration(cfg, args, model_dir: str, prompts: list[str]) -> dict:
    """Engine starts for one iteration's sampling stages on M_t (evaluate it: greedy + majority; sample
    iteration t+1's prompts; then training, before which the loop stops the engine), stopping the engine
    after every stage (as before) and as the loop does now."""
    from irpo.sampling import SamplingRequest, sample_all
    from irpo.sampling.vllm_sampler import VLLMSampler
    from irpo.tasks.answer_line import AnswerLine
    from irpo.tasks.base import FINAL_ANSWER

    sampler_cfg = compose(*MODELS[args.model_name], "sampler=vllm", *vllm_overrides(args)).sampler
    rule = AnswerLine(FINAL_ANSWER)  # the GSM8K task's stop rule, as the loop's stages send it
    greedy = SamplingRequest(1, 0.0, 1.0, 16, seed=0, stop_rule=rule, desc="eval greedy")
    voting = SamplingRequest(args.samples, 0.8, 1.0, 16, seed=0, stop_rule=rule, desc="eval majority")
    sampling = SamplingRequest(args.samples, 0.8, 1.0, 16, seed=1, stop_rule=rule, desc="generate")
    counts = {}
    for mode in ("before: one engine per stage", "now: one engine per model"):
        sampler = VLLMSampler(sampler_cfg, cfg.model)
        started = time.perf_counter()
        sample_all(sampler, model_dir, prompts, [greedy, voting])  # evaluate M_t
        if mode.startswith("before"):
            sampler.close()
        sample_all(sampler, model_dir, prompts, [sampling])  # sample for iteration t+1
        sampler.close()  # training
        counts[mode] = {
            "starts_per_iteration": sampler.engine_starts,
            "seconds": round(time.perf_counter() - started, 1),
        }
    return counts


def measure_model(cfg, args, model_dir: str, prompts: list[str]) -> dict:
    """Every arm on one model: repeat r draws prompts[r*P:(r+1)*P] in every arm."""
    prompt_sets = [prompts[r * args.prompts : (r + 1) * args.prompts] for r in range(args.repeats)]

    def bare(batch: list[str]) -> tuple[int, float, float]:
        return (*bare_generate(model_dir, batch, args.samples, args.max_new_tokens, cfg.model.dtype), 0.0)

    def bare_bf16(batch: list[str]) -> tuple[int, float, float]:
        return (*bare_generate(model_dir, batch, args.samples, args.max_new_tokens, "bfloat16"), 0.0)

    makers = {
        "generate": lambda: (bare, None),
        "generate, bfloat16": lambda: (bare_bf16, None),
        "hf (loop)": lambda: sampler_arm(cfg, "hf", args, model_dir),
        "hf, generate": lambda: sampler_arm(cfg, "hf", args, model_dir, "sampler.hf.decoder=generate"),
        "hf, generate + shared prefill": lambda: sampler_arm(
            cfg, "hf", args, model_dir, "sampler.hf.decoder=generate", "sampler.hf.shared_prefill=true"
        ),
    }
    if args.vllm_python:
        makers["vllm"] = lambda: sampler_arm(cfg, "vllm", args, model_dir)
    arms = ["generate", *(a for a in makers if a in args.arms and a != "generate")]
    built = {arm: makers[arm]() for arm in arms}
    rates: dict[str, list[float]] = {arm: [] for arm in arms}
    starts: dict[str, list[float]] = {arm: [] for arm in arms}
    # Repeat by repeat, every arm on the same prompts: the machine's speed drifts by a quarter between
    # minutes here, so each arm is set against bare generate measured beside it, not minutes before.
    for repeat, batch in enumerate(prompt_sets):
        for arm in arms:
            new_tokens, seconds, start_seconds = built[arm][0](batch)
            rates[arm].append(new_tokens / max(seconds, 1e-9))
            starts[arm].append(start_seconds)
            print(
                f"{args.model_name}: repeat {repeat + 1}/{args.repeats}: {arm}: {rates[arm][-1]:.0f} tokens/s "
                f"(load {os.getloadavg()[0]:.1f})",
                file=sys.stderr,
            )
    for _, sampler in built.values():
        if sampler is not None:
            sampler.close()
    measured = {}
    for arm in arms:
        measured[arm] = summary(rates[arm]) | {"starts": starts[arm]}
        for base in ("generate", "generate, bfloat16"):
            if base in rates:
                ratios = [a / b for a, b in zip(rates[arm], rates[base], strict=True)]
                measured[arm][f"x {base}"] = summary(ratios)
    return measured


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vllm-python", default=os.environ.get("IRPO_VLLM_PYTHON"))
    parser.add_argument("--skip-engine-starts", action="store_true")
    parser.add_argument(
        "--arms",
        nargs="+",
        default=["generate", "hf (loop)", "hf, generate", "hf, generate + shared prefill", "vllm"],
        help='which to run besides bare "generate" (also: "generate, bfloat16"); vllm needs --vllm-python',
    )
    parser.add_argument("--shared", default=os.environ.get("IRPO_SHARED_DIR", str(ROOT.parent / "shared")))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))  # the vLLM worker's threads
    load = os.getloadavg()
    results: dict = {"threads": args.threads, "load_before": load, "models": {}}
    for name in args.models:
        args.model_name = name
        cfg, model_dir, prompts = model_and_prompts(name, args.prompts * args.repeats, Path(args.shared))
        results["models"][name] = measure_model(cfg, args, model_dir, prompts)
        if args.vllm_python and not args.skip_engine_starts and name == args.models[0]:
            print(f"{name}: engine starts per iteration ...", file=sys.stderr)
            results["engine_starts"] = engine_starts_per_iteration(cfg, args, model_dir, prompts[: args.prompts])
    results["load_after"] = os.getloadavg()
    print_table(results, args)
    return results


def print_table(results: dict, args) -> None:
    print(
        f"\n{args.prompts} prompts x {args.samples} samples, up to {args.max_new_tokens} new tokens, "
        f"{args.threads} threads, median of {args.repeats} (min-max); load average before "
        f"{results['load_before'][0]:.2f}, after {results['load_after'][0]:.2f}"
    )
    print("| model | sampler | tokens/s | spread | x bare generate (spread) | x bare generate, bfloat16 (spread) |")
    print("|---|---|---|---|---|---|")
    for model, arms in results["models"].items():
        for arm, r in arms.items():
            starts = [seconds for seconds in r["starts"] if seconds]
            note = f" (engine start {statistics.median(starts):.0f} s, not counted)" if starts else ""
            ratios = [
                f"{r[key]['median']:.1f}x ({r[key]['min']:.1f}-{r[key]['max']:.1f})" if key in r else "-"
                for key in ("x generate", "x generate, bfloat16")
            ]
            spread = f"{r['min']:.0f}-{r['max']:.0f}"
            print(f"| {model} | {arm}{note} | {r['median']:.0f} | {spread} | {' | '.join(ratios)} |")
    if "engine_starts" in results:
        print("\n| sampler=vllm, two iterations' sampling stages | engine starts per iteration | seconds |")
        print("|---|---|---|")
        for mode, r in results["engine_starts"].items():
            print(f"| {mode} | {r['starts_per_iteration']:.1f} | {r['seconds']} |")
    print(json.dumps(results, default=str), file=sys.stderr)


if __name__ == "__main__":
    main()
