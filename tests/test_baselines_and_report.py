"""Baselines are configs of the same loop; the report rebuilds the paper's tables and figures from run dirs."""

import os
import subprocess
import sys

import pytest

from irpo.loop import run
from irpo.report import build_report
from irpo.rundir import read_json, read_jsonl

pytestmark = pytest.mark.slow
SMOKE = ["experiment=smoke"]


def test_paper_gsm8k_preset_end_to_end_on_the_embedded_task(tmp_path, model_cache):
    sweep = tmp_path / "sweep"
    result = subprocess.run([sys.executable, "-m", "irpo", "experiment=[smoke,paper_gsm8k]",
                             f"hydra.sweep.dir={sweep}"], capture_output=True, text=True,
                            env={**os.environ, "IRPO_CACHE": str(model_cache)})
    assert result.returncode == 0, result.stderr[-3000:]
    report = (sweep / "report.md").read_text()
    for label in ["Zero-shot CoT", "SFT on gold CoT", "STaR (SFT on chosen, 1 iteration)", "STaR, twice the data",
                  "SFT on chosen of the pairs", "DPO, from M0", "DPO, from SFT on chosen", "Iterative RPO",
                  "Iterative RPO, from SFT on chosen", "Iterative RPO, twice the data (1 iteration)"]:
        rows = [line for line in report.splitlines() if line.startswith(f"| {label} |")]
        assert rows, f"no row for {label}"
        assert all(cell.strip().rstrip("%").replace(".", "").isdigit() for row in rows for cell in row.split("|")[3:4])
    assert len([line for line in report.splitlines() if line.startswith("| Iterative RPO | ")]) == 3
    for png in ["accuracy.png", "logprobs_sft_chosen_vs_irpo.png", "logprobs_dpo_vs_irpo.png"]:
        assert (sweep / png).stat().st_size > 10_000, png
    assert "pairs kept" in (sweep / "pairs.txt").read_text()
    # The baselines really differ in what they train on and from.
    star_rows = read_jsonl(sweep / "star/iter_1/pairs.jsonl")  # may be empty: the smoke M0 is rarely right
    assert all("rejected" not in row for row in star_rows)
    assert len(read_jsonl(sweep / "star_2x/iter_1/pairs.jsonl")) == 2 * len(star_rows)
    assert not (sweep / "sft_gold/iter_1/generations.jsonl").exists()  # gold SFT needs no sampling
    assert read_jsonl(sweep / "sft_gold/iter_1/pairs.jsonl")  # ...and always has data
    assert read_json(sweep / "dpo/iter_1/model/train_summary.json")["alpha"] == 0.0
    assert read_json(sweep / "irpo/iter_1/model/train_summary.json")["alpha"] == 4.0  # model=tiny's weighting
    # DPO from STaR starts where the star run ended.
    assert read_json(sweep / "dpo_from_star/iter_0/metrics.json")["model"] == \
        read_json(sweep / "star/iter_1/metrics.json")["model"]
    assert read_json(sweep / "zero_shot/iter_0/metrics.json")["eval"]["majority_k"] == 2
    assert not (sweep / "zero_shot/iter_1").exists()


def test_checkpoint_selection_and_retraining_with_held_out(make_config, tmp_path):
    cfg = make_config(*SMOKE, "iterations=1", "trainer.eval_every=1", "trainer.max_steps=3",
                      "trainer.retrain_with_heldout=true", "task.num_valid=6")
    run(cfg)
    metrics = read_json(tmp_path / "run/iter_1/metrics.json")
    selected = metrics["train"]["selected_step"]
    assert selected in (1, 2, 3) and set(metrics["train"]["held_out_accuracy"]) == {"1", "2", "3"}
    assert read_json(tmp_path / "run/iter_1/model/train_summary.json")["steps"] == selected
    pairs = read_jsonl(tmp_path / "run/iter_1/pairs.jsonl")
    assert {p["split"] for p in pairs} == {"train", "valid"}  # held-out prompts joined the retraining


def test_init_from_a_model_or_a_run_directory(make_config, tmp_path):
    first = tmp_path / "first"
    run(make_config(*SMOKE, "iterations=1", run_dir=first))
    second = tmp_path / "second"
    run(make_config(*SMOKE, "iterations=1", f"init_from={first}", run_dir=second))
    assert read_json(second / "iter_0/metrics.json")["model"] == str(first / "iter_1/model")
    assert read_json(second / "iter_1/model/train_summary.json")["init_model"] == str(first / "iter_1/model")
    with pytest.raises(FileNotFoundError, match="run:missing"):
        run(make_config(*SMOKE, "iterations=1", "init_from=run:missing", run_dir=tmp_path / "third"))


def test_report_of_a_single_run(make_config, tmp_path):
    run(make_config(*SMOKE, "iterations=1"))
    report = build_report(tmp_path / "run", quiet=True)
    assert [r["iteration"] for r in report["rows"]] == [0, 1]
    assert all(path.stat().st_size > 10_000 for path in report["figures"])
