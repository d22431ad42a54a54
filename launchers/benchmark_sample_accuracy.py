"""Does a sampler change move what the loop trains on? The share of correct samples that M0 draws for
iteration 1, over many seeds: the same prompts, N, temperature and reward as the loop's first generate step.

    python launchers/benchmark_sample_accuracy.py --seeds 20 [extra overrides...]

Two samplers that draw from the same distribution give the same mean up to its standard error (printed);
a sampler that is biased, or subtly wrong about the distribution, shows as a gap of several errors. Run
it against an older release by putting that release first on PYTHONPATH: only the imports below are used.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

import irpo
from irpo.config import register_configs, temperature_for, validate
from irpo.models.loading import load_tokenizer
from irpo.models.tokens import render_prompt
from irpo.sampling import SamplingRequest, build_sampler, sample_all
from irpo.seed_model import prepare_seed_model
from irpo.seeds import sampling_seed
from irpo.tasks import build_task

CONF_DIR = Path(irpo.__file__).resolve().parents[1] / "conf"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20, help="draws of every prompt, seeds 1..S")
    args, overrides = parser.parse_known_args()
    register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("config", overrides=["run_dir=unused", *overrides])
    validate(cfg)
    task = build_task(cfg.task)
    splits = task.load_splits()
    # The prompts iteration 1 samples: the training questions, and the held-out ones when they are retrained on.
    held_out = splits.valid[: cfg.trainer.select_examples] if cfg.trainer.retrain_with_heldout else []
    examples = list(splits.train) + held_out
    model_dir = prepare_seed_model(cfg, task)
    tokenizer = load_tokenizer(model_dir)
    prompts = [render_prompt(task, e, tokenizer, cfg.model.use_chat_template) for e in examples]
    sampler = build_sampler(cfg.sampler, cfg.model)
    shares = []
    try:
        for seed in range(1, args.seeds + 1):
            started = time.perf_counter()
            request = SamplingRequest(
                cfg.generation.num_samples,
                temperature_for(cfg.generation, 1),
                cfg.generation.top_p,
                cfg.generation.max_new_tokens,
                seed=sampling_seed(seed, 1),  # the loop's iteration-1 seed for `seed=S`
                stop_rule=task.stop_rule(),
                stop=tuple(cfg.generation.stop),
            )
            (drawn,) = sample_all(sampler, model_dir, prompts, [request])
            rewards = [
                task.reward(example, completion.text)[1]
                for example, completions in zip(examples, drawn.completions, strict=True)
                for completion in completions
            ]
            shares.append(sum(rewards) / len(rewards))
            seconds = time.perf_counter() - started
            print(f"seed {seed}: {100 * shares[-1]:.2f}% of {len(rewards)} samples correct ({seconds:.0f} s)")
    finally:
        sampler.close()
    se = statistics.stdev(shares) / len(shares) ** 0.5 if len(shares) > 1 else float("nan")
    seeds = f"{len(shares)} seed{'s' if len(shares) > 1 else ''}"
    print(
        f"\nirpo at {Path(irpo.__file__).parent}: {100 * statistics.mean(shares):.2f} ± {100 * se:.2f}% "
        f"correct over {seeds} (mean ± standard error; range {100 * min(shares):.2f}-{100 * max(shares):.2f}%)"
    )


if __name__ == "__main__":
    main()
