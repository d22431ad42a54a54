"""SmolLM2-135M-Instruct (model=smollm2_135m_instruct) on this machine: zero-shot accuracy and answer format on
the embedded arithmetic task, GSM8K and ARC-Challenge, then IRPO against SFT on gold over the same budget.

    IRPO_SHARED_DIR=/path/to/shared python launchers/benchmark_real_model.py [--out DIR] [--threads 1]

Sized to what fitted on this project's 2-core CPU while other jobs held the cores (about 55 minutes
wall, the parts side by side; docs/performance.md); every size is a constant below, with why. Each
part is a normal run directory under --out (rerunning resumes it); the tables go to --out/tables.md and
timings to --out/timings.json. The training part needs only the zero-shot arithmetic run, so
`--parts zero_shot` and `--parts training` (or `--methods irpo` and `--methods sft_gold`) can run as
separate processes once that exists.

Prompts are the paper's: GSM8K's zero-shot instruction (Appendix B.1) for GSM8K and for the arithmetic
task (which is in GSM8K's answer format but has no instruction of its own), ARC's for ARC, each in the
model's chat template. Standard errors are sqrt(p(1-p)/n).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
MODEL = "model=smollm2_135m_instruct"

# Zero-shot: (task overrides, test questions, majority-vote samples, new-token budget). GSM8K and ARC
# answers need ~150-250 tokens of reasoning before the answer line; arithmetic problems are two steps.
# Measured here, one thread, batch 32: 4-8 s per arithmetic sequence (prompt ~130 tokens in the chat
# template + 80 new), 15-25 s per GSM8K/ARC one. The question counts are what fitted.
ZERO_SHOT = {
    "arithmetic": ([], 40, 3, 80),
    "gsm8k": (["task=gsm8k", "task.data_dir={shared}/datasets/gsm8k", "task.max_train=1"], 10, 2, 256),
    "arc_challenge": (["task=arc_challenge", "task.data_dir={shared}/datasets/arc", "task.max_train=1"], 10, 2, 192),
}
# Training, on the arithmetic task: the only one of the three with gold chains of thought short enough to
# train on here (GSM8K pairs are ~3x longer; ARC has no gold CoT, so no SFT-on-gold baseline). Both
# methods take the same optimizer steps of the same batch from the same M0, at one learning rate picked
# so that 2 steps move a 135M model at all (the paper's 7e-7 is for thousands of steps).
# One IRPO iteration: 16 questions x 4 samples, 2 pairs each, of which a seeded 8 are trained on: 2 steps
# of 4 (a DPO step of 8 pairs took 4 minutes here while other jobs held the cores; this is what fitted).
# The trained models are scored greedily on the first 10 arithmetic test questions, M0 on the same 10.
TRAINING_SIZES = {
    "questions": 16,
    "samples": 4,
    "pairs_per_prompt": 2,
    "max_pairs": 8,
    "steps": 2,
    "batch": 4,
    "lr": 3e-5,
    "eval_questions": 10,
}
TRAINING = {
    "irpo": ["method=irpo", "iterations=1"],
    "sft_gold": ["method=sft_gold"],
}
# --quick: the same script at the smallest sizes, to check it end to end in a few minutes.
QUICK_ZERO_SHOT = {"questions": 2, "k": 2, "max_new_tokens": 16}
QUICK_TRAINING = {
    "questions": 2,
    "samples": 2,
    "pairs_per_prompt": 1,
    "max_pairs": 2,
    "steps": 1,
    "batch": 2,
    "eval_questions": 2,
}


def zero_shot_plan(quick: bool) -> dict:
    if not quick:
        return ZERO_SHOT
    q = QUICK_ZERO_SHOT
    return {
        task: (overrides, q["questions"], q["k"], q["max_new_tokens"]) for task, (overrides, *_) in ZERO_SHOT.items()
    }


def training_overrides(sizes: dict) -> list[str]:
    return [
        f"task.num_train={sizes['questions']}",
        f"generation.num_samples={sizes['samples']}",
        f"pairs.pairs_per_prompt={sizes['pairs_per_prompt']}",
        f"pairs.max_pairs={sizes['max_pairs']}",
        f"trainer.max_steps={sizes['steps']}",
        f"eval.max_examples={sizes['eval_questions']}",
        "trainer.epochs=100",
        f"trainer.batch_size={sizes['batch']}",
        f"trainer.micro_batch_size={sizes['batch']}",
        f"trainer.lr={sizes['lr']}",
        "trainer.warmup_steps=0",
        "trainer.lr_schedule=constant",
        "eval.majority_k=0",
    ]


def compose_config(run_dir: Path, overrides: list[str]):
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("config", overrides=[f"run_dir={run_dir}", MODEL, "sampler.hf.batch_size=32", *overrides])


def paper_instruction(shared: str) -> str:
    """GSM8K's zero-shot instruction, taken from its task config, for the arithmetic task's prompts."""
    return compose_config(Path("unused"), ["task=gsm8k", f"task.data_dir={shared}/datasets/gsm8k"]).task.instruction


def run_part(name: str, run_dir: Path, overrides: list[str], instruction: str | None, timings: dict) -> bool:
    """Runs one part unless it finished before; returns whether it ran."""
    from irpo.loop import run

    if (run_dir / "results.json").exists():
        print(f"== {name}: finished before, kept", flush=True)
        return False
    cfg = compose_config(run_dir, overrides)
    if instruction is not None:
        cfg.task.instruction = instruction
    started = time.perf_counter()
    print(f"== {name}: {' '.join(overrides)}", flush=True)
    run(cfg)
    timings[name] = round(time.perf_counter() - started, 1)
    print(f"== {name}: {timings[name]:.0f} s", flush=True)
    return True


def stderr(p: float, n: int) -> float:
    return math.sqrt(p * (1 - p) / n) if n else float("nan")


def pct(p: float, n: int) -> str:
    return f"{100 * p:.1f}% ± {100 * stderr(p, n):.1f}"


def eval_rows(run_dir: Path, t: int) -> list[dict]:
    return [json.loads(line) for line in (run_dir / f"iter_{t}/eval.jsonl").read_text().splitlines()]


def share(rows: list[dict], key: str) -> float:
    return sum(bool(r[key]) for r in rows) / len(rows)


def answered(rows: list[dict], key: str) -> float:
    """The share of questions with an extracted answer: the answer-format rate."""
    return sum(r[key] is not None for r in rows) / len(rows)


def accuracy_and_format(rows: list[dict]) -> str:
    n = len(rows)
    return f"{pct(share(rows, 'greedy_correct'), n)} | {pct(answered(rows, 'greedy_answer'), n)}"


def zero_shot_table(out: Path, timings: dict) -> str:
    lines = [
        "| task | questions | greedy acc | greedy format | maj@k acc | k | any answer in k | wall |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for task in ZERO_SHOT:
        rows = eval_rows(out / f"zero_shot-{task}", 0)
        n = len(rows)
        k = json.loads((out / f"zero_shot-{task}/iter_0/eval.json").read_text())["majority_k"]
        lines.append(
            f"| {task} | {n} | {accuracy_and_format(rows)} | "
            f"{pct(share(rows, 'majority_correct'), n)} | {k} | {pct(answered(rows, 'majority_answer'), n)} | "
            f"{timings.get(f'zero_shot-{task}', float('nan')):.0f} s |"
        )
    return "\n".join(lines)


def training_table(out: Path, timings: dict, batch: int) -> str:
    n = len(eval_rows(out / f"train-{next(iter(TRAINING))}", 1))
    lines = [
        "| model | training | greedy acc | greedy format | wall |",
        "|---|---|---|---|---|",
        f"| M0 | - | {accuracy_and_format(eval_rows(out / 'zero_shot-arithmetic', 0)[:n])} | - |",
    ]
    for method in TRAINING:
        run_dir = out / f"train-{method}"
        summary = json.loads((run_dir / "iter_1/model/train_summary.json").read_text())
        made = len((run_dir / "iter_1/pairs.jsonl").read_text().splitlines())
        what = f"{summary['steps']} steps × {batch} on {made} {'pairs' if method == 'irpo' else 'gold CoTs'}"
        lines.append(
            f"| M1 ({method}) | {what} | {accuracy_and_format(eval_rows(run_dir, 1))} | "
            f"{timings.get(f'train-{method}', float('nan')):.0f} s |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="outputs/benchmarks/real_model")
    parser.add_argument("--shared", default=os.environ.get("IRPO_SHARED_DIR", "../shared"))
    # On this project's shared 2-core machine one thread generated 6x faster than two (12 vs 2 tokens/s,
    # the same greedy text): the second core is busy with other work, and two threads wait for each other.
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--quick", action="store_true", help="smallest sizes: checks the script, measures nothing")
    # Training needs only the zero-shot arithmetic run; the parts can run as two processes, one core each.
    parser.add_argument("--parts", nargs="+", choices=["zero_shot", "training"], default=["zero_shot", "training"])
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=list(TRAINING),
        default=list(TRAINING),
        help="the training part's methods (each its own run; they can run side by side)",
    )
    args = parser.parse_args()
    import torch

    from irpo.config import register_configs

    register_configs()
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timings_file = out / "timings.json"
    timings: dict = {}
    started = time.perf_counter()
    instruction = paper_instruction(args.shared)
    plan = zero_shot_plan(args.quick)
    sizes = {**TRAINING_SIZES, **(QUICK_TRAINING if args.quick else {})}
    arithmetic_tokens = plan["arithmetic"][3]
    ran = False
    for task, (task_overrides, n, k, max_new) in plan.items() if "zero_shot" in args.parts else ():
        overrides = [o.format(shared=args.shared) for o in task_overrides] + [
            "method=zero_shot",
            f"eval.max_examples={n}",
            f"eval.majority_k={k}",
            f"generation.max_new_tokens={max_new}",
        ]
        ran |= run_part(
            f"zero_shot-{task}",
            out / f"zero_shot-{task}",
            overrides,
            instruction if task == "arithmetic" else None,
            timings,
        )
    for method in args.methods if "training" in args.parts else ():
        method_overrides = TRAINING[method]
        run_dir = out / f"train-{method}"
        # M0's greedy evaluation is the zero-shot run's (same test questions, whatever task.num_train, same prompts,
        # same greedy decoding): copied, not redone.
        if not (out / "zero_shot-arithmetic/results.json").exists():
            raise SystemExit(
                "the training part starts from the zero-shot arithmetic run's M0 evaluation: "
                "run --parts zero_shot first, or both parts together"
            )
        if not (run_dir / "iter_0/eval.json").exists():
            shutil.copytree(out / "zero_shot-arithmetic/iter_0", run_dir / "iter_0", dirs_exist_ok=True)
            (run_dir / "iter_0/metrics.json").unlink(missing_ok=True)
        overrides = [*method_overrides, *training_overrides(sizes), f"generation.max_new_tokens={arithmetic_tokens}"]
        ran |= run_part(f"train-{method}", run_dir, overrides, instruction, timings)
    # Merged with what other invocations (the other part, run side by side) recorded.
    if ran:
        timings[f"wall {'+'.join(args.parts)} {'+'.join(args.methods)}"] = round(time.perf_counter() - started, 1)
    timings = {**(json.loads(timings_file.read_text()) if timings_file.exists() else {}), **timings}
    if ran:
        timings_file.write_text(json.dumps(timings, indent=2))
    try:
        tables = (
            f"Zero-shot ({MODEL}, {args.threads} thread(s)):\n\n{zero_shot_table(out, timings)}\n\n"
            f"Training on arithmetic (the first {sizes['eval_questions']} test questions, greedy):\n\n"
            f"{training_table(out, timings, int(sizes['batch']))}\n\nWall times (s): {json.dumps(timings)}\n"
        )
    except FileNotFoundError as missing:
        print(f"tables not written yet: {missing.filename} is missing (run the other --parts)")
        return
    (out / "tables.md").write_text(tables)
    print(tables)


if __name__ == "__main__":
    main()
