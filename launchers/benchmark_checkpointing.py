"""What a mid-training checkpoint costs, against a training step, for choosing `trainer.save_every`.

    python launchers/benchmark_checkpointing.py [--model-dir DIR] [--steps 16] [--repeats 3]

Trains the same steps twice per repeat with the torch trainer: without checkpoints, and with one after
every step (`trainer.save_every=1`, the file rewritten each time, as in a real run); the trainer times
its checkpoints and records their size (train_summary.json: checkpoint_seconds, checkpoint_bytes).
Prints the median over repeats, and the overhead that each `save_every` would add. Default model: the embedded
default's seed model M0 (built and cached as `python -m irpo` does).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from omegaconf import OmegaConf

from irpo.config import ClusterConfig, LossConfig, ModelConfig, TorchTrainerConfig, TrainerConfig
from irpo.training import build_trainer


def default_seed_model() -> str:
    from hydra import compose, initialize_config_dir

    from irpo.config import register_configs
    from irpo.seed_model import prepare_seed_model
    from irpo.tasks import build_task

    register_configs()
    with initialize_config_dir(config_dir=str(Path(__file__).resolve().parents[1] / "conf"), version_base="1.3"):
        cfg = compose("config", overrides=["run_dir=/tmp/irpo-benchmark-checkpointing"])
    return prepare_seed_model(cfg, build_task(cfg.task))


def gsm8k_shaped_pairs(count: int) -> list[dict]:
    """Pairs of the embedded task's shape: a ~60-character question, ~45-character solutions."""
    return [
        {
            "prompt": f"Question: Mia has {i % 9 + 1} apples. She buys {i % 7 + 1} more.\nSolution:",
            "chosen": f" {i % 9 + 1} + {i % 7 + 1} = {i % 9 + i % 7 + 2}\nFinal answer: {i % 9 + i % 7 + 2}",
            "rejected": f" {i % 9 + 1} + {i % 7 + 1} = {i % 9 + i % 7 + 3}\nFinal answer: {i % 9 + i % 7 + 3}",
        }
        for i in range(count)
    ]


def timed_training(model_dir: str, steps: int, save_every: int, out: Path) -> dict:
    """train_summary.json of `steps` steps of batch 16: seconds, checkpoint_seconds, checkpoint_bytes."""
    cfg = OmegaConf.structured(
        TrainerConfig(
            lr=5e-4,
            batch_size=16,
            micro_batch_size=16,
            max_steps=steps,
            save_every=save_every,
            torch=TorchTrainerConfig(device="cpu"),
        )
    )
    trainer = build_trainer(
        cfg, OmegaConf.structured(ModelConfig(name="benchmark")), OmegaConf.structured(ClusterConfig())
    )
    return trainer.train(model_dir, gsm8k_shaped_pairs(256), out, OmegaConf.structured(LossConfig()), seed=0)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model-dir", default=None, help="a model directory (default: the embedded default's M0)")
    parser.add_argument("--steps", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model_dir = args.model_dir or default_seed_model()
    plain, saving, per_checkpoint, sizes = [], [], [], []
    with tempfile.TemporaryDirectory() as work:
        for r in range(args.repeats):
            plain.append(timed_training(model_dir, args.steps, 0, Path(work) / f"plain{r}")["seconds"])
            summary = timed_training(model_dir, args.steps, 1, Path(work) / f"saving{r}")
            saving.append(summary["seconds"])
            per_checkpoint.append(summary["checkpoint_seconds"] / (args.steps - 1))  # none after the last step
            sizes.append(summary["checkpoint_bytes"])
    step = (statistics.median(saving) - statistics.median(per_checkpoint) * (args.steps - 1)) / args.steps
    checkpoint = statistics.median(per_checkpoint)
    print(f"model: {model_dir}")
    print(f"| measure | value |\n|---|---|\n| training step (batch 16), s | {step:.3f} |")
    print(f"| one checkpoint, s | {checkpoint:.3f} |\n| one checkpoint, MiB | {max(sizes) / 2**20:.1f} |")
    print(f"| checkpoint / step | {checkpoint / step:.2f} |")
    print(
        f"(median of {args.repeats}; {args.steps} steps took {', '.join(f'{s:.1f}' for s in plain)} s without "
        f"checkpoints, {', '.join(f'{s:.1f}' for s in saving)} s with one after each step)"
    )
    for every in (1, 10, 50, 250):
        print(f"save_every={every}: +{100 * checkpoint / (every * step):.1f}% training time")


if __name__ == "__main__":
    main()
