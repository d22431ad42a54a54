"""The default pipeline, shrunk to seconds, through every stage on the real tiny model and sampler."""

import json

import pytest
import torch
from safetensors.torch import load_file

from irpo.files import read_json, read_jsonl
from irpo.loop import run
from irpo.rundir import RunDir

pytestmark = pytest.mark.slow
SMOKE = ["experiment=smoke"]


def weights(model_dir):
    return load_file(str(model_dir / "model.safetensors"))


def test_default_pipeline_writes_every_artifact(make_config, tmp_path):
    cfg = make_config(*SMOKE, "iterations=2", "generation.temperatures=[0.8,1.0]")
    rows = run(cfg)
    root = tmp_path / "run"
    assert (root / "config.yaml").exists() and (root / "results.md").exists()
    assert read_json(root / "resolved.json")["sampler.name"] == "hf"  # sampler=auto, as this machine resolved it
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert [r["iteration"] for r in read_json(root / "results.json")["rows"]] == [0, 1, 2]
    for t in (1, 2):
        it = RunDir(root).iteration(t)
        generations = read_jsonl(it.generations)
        assert len(generations) == cfg.task.num_train + cfg.task.num_valid  # held-out prompts join the retrain
        assert all(len(g["samples"]) == cfg.generation.num_samples for g in generations)
        rewards = read_jsonl(it.rewards)
        assert all(set(r["rewards"]) <= {0.0, 1.0} for r in rewards)
        pairs = read_jsonl(it.pairs)
        assert pairs and all({"prompt", "chosen", "rejected"} <= set(p) for p in pairs)
        assert (it.model / "model.safetensors").exists() and (it.model / "tokenizer.json").exists()
        log = [json.loads(line) for line in (it.model / "train_log.jsonl").read_text().splitlines()]
        assert {"loss", "dpo", "nll", "chosen_logps", "rejected_logps", "reward_accuracy", "reward_margin"} <= set(
            log[0]
        )
        metrics = read_json(it.metrics)
        assert metrics["pairs"]["pairs_kept"] == len(pairs)
        # The accuracies are those of the per-question verdicts in eval.jsonl, one row per test question.
        predictions = read_jsonl(it.eval_predictions)
        assert len(predictions) == cfg.task.num_test == metrics["eval"]["examples"]
        for measure in ("greedy", "majority"):
            right = sum(p[f"{measure}_correct"] for p in predictions)
            assert metrics["eval"][f"{measure}_accuracy"] == round(right / len(predictions), 4), measure
    # M_t is trained from M_{t-1}: the weights moved.
    assert not torch.equal(
        weights(root / "iter_1/model")["model.norm.weight"], weights(root / "iter_2/model")["model.norm.weight"]
    ) or any(
        not torch.equal(a, b)
        for a, b in zip(weights(root / "iter_1/model").values(), weights(root / "iter_2/model").values(), strict=True)
    )
    # Temperature follows the per-iteration schedule.
    temperatures = [read_jsonl(RunDir(root).iteration(t).generations)[0]["temperature"] for t in (1, 2)]
    assert temperatures == [0.8, 1.0]


def test_a_run_killed_after_generation_resumes_without_regenerating(make_config, tmp_path):
    cfg = make_config(*SMOKE, "iterations=1")
    run(cfg)
    it = RunDir(tmp_path / "run").iteration(1)
    generations_before = it.generations.read_bytes()
    mtime = it.generations.stat().st_mtime_ns
    # Simulate a kill after generation: everything downstream of generations.jsonl is gone.
    import shutil

    for path in (it.rewards, it.pairs, it.pairs_stats, it.eval_metrics, it.metrics):
        path.unlink()
    shutil.rmtree(it.model)
    (tmp_path / "run" / "results.json").unlink()

    run(cfg)
    assert it.generations.stat().st_mtime_ns == mtime and it.generations.read_bytes() == generations_before
    assert it.has_model() and it.metrics.exists() and (tmp_path / "run" / "results.json").exists()


def test_a_finished_run_reruns_as_a_no_op_and_can_add_iterations(make_config, tmp_path):
    run(make_config(*SMOKE, "iterations=1"))
    model_mtime = (tmp_path / "run/iter_1/model/model.safetensors").stat().st_mtime_ns
    rows = run(make_config(*SMOKE, "iterations=2"))
    assert [r["iteration"] for r in rows] == [0, 1, 2]
    assert (tmp_path / "run/iter_1/model/model.safetensors").stat().st_mtime_ns == model_mtime


def test_resuming_with_a_different_config_is_refused(make_config, tmp_path):
    run(make_config(*SMOKE, "iterations=1"))
    with pytest.raises(ValueError, match="loss.alpha changed"):
        run(make_config(*SMOKE, "iterations=1", "loss.alpha=0.5"))


def test_alpha_zero_takes_the_plain_dpo_path(make_config, tmp_path):
    run(make_config(*SMOKE, "iterations=1", "loss.alpha=0"))
    log = [json.loads(line) for line in (tmp_path / "run/iter_1/model/train_log.jsonl").read_text().splitlines()]
    assert all(entry["loss"] == pytest.approx(entry["dpo"], abs=1e-6) for entry in log)
    assert all(entry["nll"] > 0 for entry in log)  # still measured, just not in the loss
    assert read_json(tmp_path / "run/iter_1/model/train_summary.json")["alpha"] == 0.0


def test_an_iteration_with_no_pairs_is_a_logged_skip_not_a_crash(make_config, tmp_path):
    # The smoke model gets nothing right, so SFT on its own correct samples has no data.
    rows = run(make_config(*SMOKE, "method=sft_self_correct", "iterations=1"))
    skipped = read_json(tmp_path / "run/iter_1/train_skipped.json")
    assert skipped["reason"] == "no training pairs"
    assert read_json(tmp_path / "run/iter_1/metrics.json")["train"]["steps"] == 0
    assert [r["iteration"] for r in rows] == [0, 1]
