"""TRL's DPOTrainer for a few steps on given pairs: the TRL columns of launchers/benchmark_speed.py.

    /path/to/trl-venv/bin/python launchers/benchmark_speed_trl.py --model-dir DIR --pairs pairs.json
        --batch-size 16 --steps 4 --reference precomputed|live

Runs in TRL's own interpreter (TRL is not a dependency of irpo), so it imports nothing from irpo. The
loss is DPO + NLL on the chosen side (`loss_type=["sigmoid", "sft"]`, β=0.1), one pass over the pairs
(steps x batch size = number of pairs, so every contestant trains on the same pairs). Prints one JSON line:
the tokens of the sequences trained on (prompt + chosen and prompt + rejected of every pair, as TRL
tokenized them) and the wall and CPU seconds of the training steps (from the first step's start to the last step's
end; the reference log-probs, with --reference precomputed, are computed before that, in the trainer's
constructor).
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
    parser.add_argument("--reference", choices=("precomputed", "live"), required=True)
    parser.add_argument("--lr", type=float, default=1e-5)
    parser.add_argument("--threads", type=int, default=2)
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

    class StepClock(TrainerCallback):
        started: tuple[float, float] | None = None
        ended: tuple[float, float] | None = None

        def on_step_begin(self, *_, **__):
            if self.started is None:
                self.started = (time.perf_counter(), time.process_time())

        def on_step_end(self, *_, **__):
            self.ended = (time.perf_counter(), time.process_time())

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
        report_to="none",
        save_strategy="no",
        logging_steps=10**6,
        dataloader_num_workers=0,
        seed=0,
    )
    trainer = DPOTrainer(
        model=model,
        args=config,
        train_dataset=Dataset.from_list(pairs),
        processing_class=tokenizer,
        callbacks=[clock],
    )
    rows = trainer.train_dataset
    tokens = sum(
        2 * len(p) + len(c) + len(r)
        for p, c, r in zip(rows["prompt_ids"], rows["chosen_ids"], rows["rejected_ids"], strict=True)
    )
    trainer.train()
    output_dir.cleanup()
    wall, cpu = (end - start for start, end in zip(clock.started, clock.ended, strict=True))
    print(json.dumps({"tokens": tokens, "seconds": wall, "cpu_seconds": cpu, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
