"""The real from_pretrained path: a pretrained checkpoint (stories260K) through every stage on GSM8K.

stories260K cannot do math, so accuracies are near zero; the point is the plumbing of a hub-format
model with its own tokenizer: prompts, sampling, rewards, pairs (the gold CoT is the winner), training.
"""

from pathlib import Path

import pytest

from irpo.files import read_json, read_jsonl
from irpo.loop import run
from irpo.rundir import RunDir

pytestmark = pytest.mark.shared_data


@pytest.mark.slow
def test_gsm8k_with_stories260k_runs_every_stage(shared_dir, make_config, tmp_path):
    cfg = make_config(
        "task=gsm8k",
        "model=stories260k",
        f"task.data_dir={shared_dir}/datasets/gsm8k",
        f"model.name_or_path={shared_dir}/models/stories260K",
        "task.max_train=6",
        "eval.max_examples=4",
        "iterations=1",
        "generation.num_samples=2",
        "generation.max_new_tokens=24",
        "eval.majority_k=2",
        "trainer.max_steps=2",
        "trainer.batch_size=4",
        "trainer.micro_batch_size=2",
        "trainer.select_examples=4",
        # Stories end sentences, not answers: a sample ends at its first "." (within the 24 tokens),
        # so it is a loser, not cut off by the budget (cut-off samples join no pair).
        "generation.stop=[.]",
    )
    rows = run(cfg)
    it = RunDir(tmp_path / "run").iteration(1)
    generations = read_jsonl(it.generations)
    # 6 training questions and the 4 held-out ones the retrain uses (GSM8K's protocol)
    assert len(generations) == 6 + 4 and all(len(g["samples"]) == 2 for g in generations)
    assert generations[0]["prompt"].startswith("Your task is to answer the question below.")
    pairs = read_jsonl(it.pairs)
    assert pairs, read_json(it.pairs_stats)
    assert all("Final answer:" in p["chosen"] for p in pairs)  # the gold CoT, rewritten
    assert read_json(it.model / "train_summary.json")["steps"] == 2
    assert (it.model / "model.safetensors").exists()
    assert [r["iteration"] for r in rows] == [0, 1]
    assert read_json(it.eval_metrics)["examples"] == 4


def test_tiny_model_needs_a_task_with_gold_solutions(shared_dir, make_config):
    cfg = make_config(
        "task=arc_challenge",
        f"task.data_dir={shared_dir}/datasets/arc",
        "task.max_train=4",
        "iterations=0",
        "eval.max_examples=2",
    )
    with pytest.raises(ValueError, match="task 'arc_challenge' has none"):
        run(cfg)


def test_a_pretrained_model_becomes_m0_by_a_cached_seed_sft(shared_dir, make_config, tmp_path):
    """model.seed_sft: stories260K SFT'd on the arithmetic task's seed pool (disjoint from its splits); cached by
    its recipe, so a second run reuses it and a changed lr makes another M0."""
    from irpo.seed_model import prepare_seed_model
    from irpo.tasks import build_task

    overrides = [
        "model=stories260k",
        f"model.name_or_path={shared_dir}/models/stories260K",
        "model.seed_sft.steps=2",
        "model.seed_sft.batch_size=4",
        "task.num_seed_sft=8",
    ]
    cfg = make_config(*overrides)
    task = build_task(cfg.task)
    m0 = Path(prepare_seed_model(cfg, task))
    summary = read_json(m0 / "train_summary.json")
    assert (summary["steps"], summary["pairs"], summary["loss"]) == (2, 8, "sft")
    recipe = read_json(m0 / "recipe.json")
    assert recipe["pretrained"] == f"{shared_dir}/models/stories260K" and recipe["seed_sft"]["steps"] == 2
    before = (m0 / "model.safetensors").stat().st_mtime_ns
    assert Path(prepare_seed_model(make_config(*overrides), task)) == m0  # reused, not rebuilt
    assert (m0 / "model.safetensors").stat().st_mtime_ns == before
    other = Path(prepare_seed_model(make_config(*overrides, "model.seed_sft.lr=1e-3"), task))
    assert other != m0 and other.parent == m0.parent
    # Off (steps 0): M0 is the pretrained model as given.
    assert prepare_seed_model(make_config(*overrides[:2]), task) == f"{shared_dir}/models/stories260K"
    # method=zero_shot_pretrained skips it even where the model's options (a preset's) set it.
    skipped = make_config(*overrides, "method=zero_shot_pretrained")
    assert prepare_seed_model(skipped, task) == f"{shared_dir}/models/stories260K"


def test_the_seed_sft_is_for_pretrained_models(make_config):
    from irpo.config import validate

    with pytest.raises(ValueError, match="model.tiny.seed_sft_steps"):
        validate(make_config("model.seed_sft.steps=2"))
    with pytest.raises(ValueError, match="model.seed_sft needs steps >= 0"):
        validate(make_config("model=stories260k", "model.seed_sft.batch_size=0"))
    with pytest.raises(ValueError, match="skip_seed_sft .* needs a pretrained model"):
        validate(make_config("method=zero_shot_pretrained"))
