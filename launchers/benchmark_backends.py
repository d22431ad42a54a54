"""Throughput and peak memory of each backend on the embedded tiny model, on the same pairs and prompts.

    python launchers/benchmark_backends.py [--pairs 256] [--prompts 64] [--samples 8]
                                           [--ranks 2] [--vllm-python /path/to/vllm-venv/bin/python]

Stages: training with trainer=torch and trainer=deepspeed (--ranks CPU processes, ZeRO-3), sampling
with sampler=hf and (given an interpreter with vLLM) sampler=vllm. Each stage runs in its own process
tree; its peak resident memory is the largest sum of RSS over that tree (all ranks or engine
processes together), sampled every 50 ms. Training tokens/s is the median over steps after the first;
sampling tokens/s counts generated tokens over generation time (vLLM's engine start is listed apart).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]


def compose(*overrides: str):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from irpo.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        return hydra_compose("config", overrides=["run_dir=/tmp/unused", *overrides])


def prepare(work: Path, num_pairs: int, num_prompts: int) -> None:
    """M0 of the embedded default (cached), pairs (gold CoT vs. the same CoT with a wrong answer), prompts."""
    from irpo.seed_model import prepare_seed_model
    from irpo.tasks import build_task

    cfg = compose()
    task = build_task(cfg.task)
    model_dir = prepare_seed_model(cfg, task)
    examples = task.load_splits().train
    pairs = []
    for example in examples[:num_pairs]:
        solution = example.gold_solution or ""  # the arithmetic task has one for every question
        wrong = re.sub(r"Final answer: (-?\d+)", lambda m: f"Final answer: {int(m.group(1)) + 1}", solution)
        pairs.append({"prompt": task.prompt(example), "chosen": example.gold_solution, "rejected": wrong})
    (work / "pairs.json").write_text(json.dumps(pairs))
    (work / "prompts.json").write_text(json.dumps([task.prompt(e) for e in examples[:num_prompts]]))
    (work / "model_dir").write_text(model_dir)


def stage(name: str, work: Path, args) -> dict:
    """Runs in the child: one stage, returning its numbers."""
    from omegaconf import OmegaConf

    from irpo.config import LossConfig
    from irpo.sampling import PromptShard, SamplingRequest, build_sampler
    from irpo.tasks.answer_line import AnswerLine
    from irpo.tasks.base import FINAL_ANSWER
    from irpo.training import build_trainer

    model_dir = (work / "model_dir").read_text()
    if name.startswith("train"):
        backend = name.split("-")[1]
        cfg = compose(
            f"trainer={backend}",
            f"trainer.deepspeed.num_processes={args.ranks}",
            "trainer.micro_batch_size=8",
            "trainer.epochs=1",
        )
        pairs = json.loads((work / "pairs.json").read_text())
        out = work / f"model_{backend}"
        summary = build_trainer(cfg.trainer, cfg.model, cfg.cluster).train(
            model_dir, pairs, out, OmegaConf.structured(LossConfig(alpha=4.0)), seed=0, desc=name
        )
        rates = [json.loads(line)["tokens_per_s"] for line in (out / "train_log.jsonl").read_text().splitlines()]
        return {
            "steps": summary["steps"],
            "train_seconds": summary["seconds"],
            "tokens_per_s": statistics.median(rates[1:] or rates),
        }
    backend = name.split("-")[1]
    overrides = [f"sampler={backend}"]
    if backend == "vllm":
        overrides += [f"sampler.vllm.python={args.vllm_python}", "sampler.vllm.gpu_memory_utilization=0.3"]
    cfg = compose(*overrides)
    prompts = json.loads((work / "prompts.json").read_text())
    sampler = build_sampler(cfg.sampler, cfg.model)
    rule = AnswerLine(FINAL_ANSWER)  # the arithmetic task's stop rule, as the loop's stages send it
    request = SamplingRequest(args.samples, 0.8, 1.0, cfg.generation.max_new_tokens, 0, stop_rule=rule, desc=name)
    with closing(sampler):
        ((drawn,),) = sampler.sample(model_dir, [PromptShard(0, prompts)], [request])
    return drawn.stats.as_dict()


def measure(name: str, work: Path, args) -> dict:
    """Runs `name` in a child process tree and records its peak summed RSS."""
    command = [
        sys.executable,
        __file__,
        "--stage",
        name,
        "--work",
        str(work),
        "--ranks",
        str(args.ranks),
        "--samples",
        str(args.samples),
    ] + (["--vllm-python", args.vllm_python] if args.vllm_python else [])
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    root, peak = psutil.Process(process.pid), 0
    while process.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.05)
    assert process.stdout is not None  # stdout=PIPE
    output = process.stdout.read()
    if process.returncode != 0:
        raise SystemExit(f"{name} failed (exit {process.returncode}); rerun: {' '.join(command)}")
    result = json.loads(output.strip().splitlines()[-1])
    result.update(stage=name, wall_seconds=round(time.perf_counter() - started, 1), peak_rss_mib=round(peak / 2**20))
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=int, default=256)
    parser.add_argument("--prompts", type=int, default=64)
    parser.add_argument("--samples", type=int, default=8)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--vllm-python", default=os.environ.get("IRPO_VLLM_PYTHON"))
    parser.add_argument("--stage")
    parser.add_argument("--work")
    args = parser.parse_args()
    if args.stage:
        print(json.dumps(stage(args.stage, Path(args.work), args)))
        return

    work = Path(tempfile.mkdtemp(prefix="irpo-bench-backends-"))
    prepare(work, args.pairs, args.prompts)
    stages = ["train-torch", "train-deepspeed", "sample-hf"] + (["sample-vllm"] if args.vllm_python else [])
    results = []
    for name in stages:
        print(f"running {name} ...", file=sys.stderr)
        results.append(measure(name, work, args))
    print(
        f"\n{os.cpu_count()} CPU cores; {args.pairs} pairs (batch 16, micro-batch 8); "
        f"{args.prompts} prompts x {args.samples} samples"
    )
    print("| stage | tokens/s | stage wall (s) | peak RSS (MiB) | notes |\n|---|---|---|---|---|")
    for r in results:
        notes = f"{r['steps']} steps" if "steps" in r else f"{r['new_tokens']} new tokens"
        if "engine_start_seconds" in r:
            notes += f", engine start {r['engine_start_seconds']} s"
        if r["stage"] == "train-deepspeed":
            notes += f", {args.ranks} ranks"
        print(f"| {r['stage']} | {r['tokens_per_s']:.0f} | {r['wall_seconds']} | {r['peak_rss_mib']} | {notes} |")
    (work / "results.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults: {work / 'results.json'}")


if __name__ == "__main__":
    main()
