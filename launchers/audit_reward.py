"""Audit the reward on a model's own outputs: draw samples to read and label, then count the reward's mistakes.

    python launchers/audit_reward.py sample --out audit.jsonl --questions 100 --samples 2 [overrides...]
    python launchers/audit_reward.py sample --out audit.jsonl --model-dir <run>/iter_3/model [overrides...]
    python launchers/audit_reward.py score audit.jsonl

`sample` composes the config as `python -m irpo <overrides>` would (the task, the model and its chat template), draws
greedy and sampled answers to the first test questions from M0 (or from --model-dir, e.g. a run's last iteration), and
writes one row per answer: the question, the gold answer, the completion as the loop keeps it, the answer the task
extracts and the reward. A person then reads each row and adds `"label": true` where the completion's final answer is
right (the value it commits to as its answer matches the gold answer) and `false` where it is not, and may add a
`"note"` and a `"form"`: requested (on the "Final answer:" line), other (committed some other way) or none. `score`
recomputes every reward with the current answer checker and prints the confusion counts against the labels, by form:
false positives (rewarded, wrong) and false negatives (right, not rewarded), each listed. tests/fixtures/reward_audit/
holds the labelled answers of issue 23's audit.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from hydra import compose, initialize_config_dir

import irpo
from irpo.config import register_configs, validate
from irpo.models.loading import load_tokenizer
from irpo.models.tokens import render_prompt
from irpo.protocols import SamplingRequest
from irpo.sampling import build_sampler, sample_all
from irpo.seed_model import prepare_seed_model
from irpo.tasks import build_task

CONF_DIR = Path(irpo.__file__).resolve().parents[1] / "conf"
FORMS = ["requested", "other", "none", "-"]  # how an answer was committed to ("-": the row does not say)


def sample(args: argparse.Namespace, overrides: list[str]) -> None:
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["run_dir=unused", *overrides])
    validate(cfg)
    task = build_task(cfg.task)
    examples = task.load_splits().get(args.split)[: args.questions]
    model_dir = args.model_dir or prepare_seed_model(cfg, task)
    tokenizer = load_tokenizer(model_dir)
    prompts = [render_prompt(task, e, tokenizer, cfg.model.use_chat_template) for e in examples]
    budget, rule = cfg.generation.max_new_tokens, task.stop_rule()
    requests = [SamplingRequest(1, 0.0, 1.0, budget, args.seed, stop_rule=rule)]
    if args.samples:
        requests.append(SamplingRequest(args.samples, args.temperature, 1.0, budget, args.seed, stop_rule=rule))
    sampler = build_sampler(cfg.sampler, cfg.model)
    try:
        drawn = sample_all(sampler, model_dir, prompts, requests)
    finally:
        sampler.close()
    rows = []
    for request, result in zip(requests, drawn, strict=True):
        for example, completions in zip(examples, result.completions, strict=True):
            for k, completion in enumerate(completions):
                text = task.finish(completion.text)
                answer, reward = task.reward(example, text)
                rows.append(
                    {
                        "id": f"{example.id}/{'greedy' if request.temperature == 0 else f'T{request.temperature}-{k}'}",
                        "task": task.name,
                        "model": str(model_dir),
                        "question": example.question,
                        "gold_answer": example.gold_answer,
                        "meta": example.meta,
                        "completion": text,
                        "truncated": completion.truncated,
                        "extracted": answer,
                        "reward": reward,
                    }
                )
    Path(args.out).write_text("".join(json.dumps(row) + "\n" for row in rows))
    print(f'{len(rows)} answers from {model_dir} -> {args.out}; label each with "label": true/false, then `score`')


def score(args: argparse.Namespace, overrides: list[str]) -> None:
    """Confusion counts of the current checker against the labels (the task of each row, as configured), by form."""
    register_configs()
    rows = [json.loads(line) for line in Path(args.labelled).read_text().splitlines() if line.strip()]
    unlabelled = [row["id"] for row in rows if not isinstance(row.get("label"), bool)]
    if unlabelled:
        sys.exit(f"{len(unlabelled)} rows have no true/false label, e.g. {unlabelled[:3]}")
    tasks = {}
    counts: dict[str, Counter[str]] = {}
    for row in rows:
        if row["task"] not in tasks:
            with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
                tasks[row["task"]] = build_task(compose("config", overrides=[f"task={row['task']}", *overrides]).task)
        rewarded = reward_of(tasks[row["task"]], row)
        kind = f"{'T' if rewarded == row['label'] else 'F'}{'P' if rewarded else 'N'}"
        form = row.get("form", "-")
        counts.setdefault(form, Counter())[kind] += 1
        if kind[0] == "F":
            print(f"{kind} ({form}): {row['id']}: gold {row['gold_answer']!r}, answer line {row['extracted']!r}")
    counts = {form: counts[form] for form in sorted(counts, key=lambda f: [*FORMS, f].index(f))}  # unknown forms last
    counts["all"] = sum(counts.values(), Counter())
    print(f"{'form':<10} {'TP':>4} {'FP':>4} {'FN':>4} {'TN':>4} {'total':>6}")
    for form, count in counts.items():
        cells = " ".join(f"{count[kind]:>4}" for kind in ("TP", "FP", "FN", "TN"))
        print(f"{form:<10} {cells} {count.total():>6}")


def reward_of(task, row: dict) -> bool:
    """The current checker's reward for a labelled row (the gold answer as recorded, no dataset needed)."""
    from irpo.tasks.base import Example

    example = Example(row["id"], row["question"], row["gold_answer"], meta=row.get("meta") or {})
    return task.reward(example, row["completion"])[1] == 1.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    draw = commands.add_parser("sample", help="draw answers to label (unknown arguments are config overrides)")
    draw.add_argument("--out", required=True)
    draw.add_argument("--model-dir", default=None, help="a model directory (default: the config's M0)")
    draw.add_argument("--split", default="test")
    draw.add_argument("--questions", type=int, default=100)
    draw.add_argument("--samples", type=int, default=2, help="sampled answers per question besides the greedy one")
    draw.add_argument("--temperature", type=float, default=0.8)
    draw.add_argument("--seed", type=int, default=0)
    count = commands.add_parser("score", help="the checker against the labels (unknown arguments: task overrides)")
    count.add_argument("labelled")
    args, overrides = parser.parse_known_args()
    (sample if args.command == "sample" else score)(args, overrides)


if __name__ == "__main__":
    main()
