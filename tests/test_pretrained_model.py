"""The real from_pretrained path: a pretrained checkpoint (stories260K) through every stage on GSM8K.

stories260K cannot do math, so accuracies are near zero; the point is the plumbing of a hub-format
model with its own tokenizer: prompts, sampling, rewards, pairs (the gold CoT is the winner), training.
"""

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
