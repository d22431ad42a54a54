"""Baselines are configs of the same loop; the report rebuilds the paper's tables and figures from run dirs."""

import csv
import os
import re
import subprocess
import sys

import pytest

from irpo.loop import run
from irpo.report import build_report
from irpo.rundir import read_json, read_jsonl

pytestmark = pytest.mark.slow
SMOKE = ["experiment=smoke"]
ACCURACY = re.compile(r"\d+\.\d ± \d+\.\d%")  # "25.5 ± 3.1%": an accuracy and its standard error
PAIRED = re.compile(r"[+-]\d+\.\d pts, p=[\d.e-]+ \(b=\d+, c=\d+\)")  # "+2.5 pts, p=0.31 (b=7, c=2)"


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
        assert all(ACCURACY.fullmatch(cell.strip()) for row in rows for cell in row.split("|")[3:4]), rows
        if label != "Iterative RPO":  # every other row is tested against IRPO's row of its iteration
            assert all(PAIRED.match(row.split("|")[8].strip()) for row in rows), rows
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
    results = (tmp_path / "run/results.md").read_text().splitlines()
    m1 = next(line for line in results if line.startswith("| 1 | M1 |")).split("|")
    assert ACCURACY.fullmatch(m1[3].strip()) and PAIRED.fullmatch(m1[5].strip()), m1  # greedy, vs M0
    assert [r["row"] for r in report["paired_tests"]] == ["Iterative RPO [run], iteration 1"]


def test_report_tests_a_baseline_against_irpo_on_real_runs(make_config, tmp_path):
    sweep = tmp_path / "sweep"
    run(make_config(*SMOKE, "iterations=2", run_dir=sweep / "irpo"))
    run(make_config(*SMOKE, "method=dpo", run_dir=sweep / "dpo"))
    report = build_report(sweep, quiet=True)
    dpo = next(row for row in report["rows"] if row["run"] == "dpo" and row["iteration"] == 1)
    assert PAIRED.fullmatch(dpo["greedy_vs_irpo"]) and PAIRED.fullmatch(dpo["majority_vs_irpo"]), dpo
    assert dpo["greedy_vs_irpo_n"] == dpo["examples"] == 16  # the same 16 test questions
    assert dpo["greedy_vs_irpo_points"] == pytest.approx(100 * (dpo["greedy_accuracy"] - read_json(
        sweep / "irpo/iter_1/eval.json")["greedy_accuracy"]))
    markdown = (sweep / "report.md").read_text()
    assert "| DPO, from M0 | 1 | " in markdown and "## Paired tests" in markdown
    assert "| DPO, from M0, iteration 1 | Iterative RPO, iteration 2 |" in markdown
    with (sweep / "report.csv").open() as f:
        header = next(csv.reader(f))
    assert {"greedy_se", "majority_se", "greedy_vs_irpo_p", "majority_vs_irpo_b"} <= set(header)
