"""TRL's DPOTrainer for a few steps on given pairs: the TRL columns of launchers/benchmark_speed.py.

    /path/to/trl-venv/bin/python launchers/benchmark_speed_trl.py --model-dir DIR --pairs pairs.json
        --batch-size 16 --steps 4 --reference precomputed|live

Runs in TRL's own interpreter (TRL is not a dependency of irpo), so it imports nothing from irpo. The
loss is DPO + NLL on the chosen side (`loss_type=["sigmoid", "sft"]`, β=0.1), one pass over the pairs
(steps x batch size = number of pairs, so every contestant trains on the same pairs). Prints one JSON line:
the tokens of the sequences trained on in the timed steps (prompt + chosen and prompt + rejected of each
pair, as TRL's collator batched them: the attention mask's ones) and the wall and CPU seconds of those
steps, each from its start to its end (optimizer included). The first --warmup-steps steps are not timed;
the reference log-probs, with --reference precomputed, are computed before any step, in the constructor.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--pairs", required=True)
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--steps", type=int, required=True)
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--reference", choices=("precomputed", "live"), required=True)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--bf16", action="store_true", help="TrainingArguments(bf16=True): autocast on the CPU")
    args = parser.parse_args()

    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    warnings.filterwarnings("ignore")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    pairs = json.loads(Path(args.pairs).read_text())
    if len(pairs) != args.steps * args.batch_size:
        raise SystemExit(f"{len(pairs)} pairs for {args.steps} steps x {args.batch_size}: one pass needs them equal")
    tokenizer = AutoTokenizer.from_pretrained(args.model_dir)
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(args.model_dir, dtype=torch.float32)

    steps: list[dict] = []  # each step's tokens and (wall, CPU) at its start and end

    class StepClock(TrainerCallback):
        def on_step_begin(self, *_, **__):
            steps.append({"tokens": 0, "start": (time.perf_counter(), time.process_time())})

        def on_step_end(self, *_, **__):
            steps[-1]["end"] = (time.perf_counter(), time.process_time())

    class CountingDPOTrainer(DPOTrainer):
        def training_step(self, model, inputs, *rest, **kwargs):
            steps[-1]["tokens"] += int(inputs["attention_mask"].sum())
            return super().training_step(model, inputs, *rest, **kwargs)

    clock = StepClock()
    output_dir = tempfile.TemporaryDirectory(prefix="trl-bench-")
    config = DPOConfig(
        output_dir=output_dir.name,
        per_device_train_batch_size=args.batch_size,
        max_steps=args.steps,
        learning_rate=args.lr,
        beta=0.1,
        loss_type=["sigmoid", "sft"],
        precompute_ref_log_probs=args.reference == "precomputed",
        max_length=None,
        use_cpu=True,
        bf16=args.bf16,
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = CountingDPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    trainer.train()
    output_dir.cleanup()
    timed = steps[args.warmup_steps :]
    if len(steps) != args.steps or not timed:
        raise SystemExit(f"TRL ran {len(steps)} steps of {args.steps}, {args.warmup_steps} of them warm-up")
    wall = sum(s["end"][0] - s["start"][0] for s in timed)
    cpu = sum(s["end"][1] - s["start"][1] for s in timed)
    tokens = sum(s["tokens"] for s in timed)
    print(json.dumps({"tokens": tokens, "seconds": wall, "cpu_seconds": cpu, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
