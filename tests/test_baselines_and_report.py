"""Baselines are configs of the same loop; the report rebuilds the paper's tables and figures from run dirs."""

import csv
import os
import re
import subprocess
import sys

import pytest

from irpo.files import read_json, read_jsonl
from irpo.loop import run
from irpo.report import build_report

pytestmark = pytest.mark.slow
SMOKE = ["experiment=smoke"]
ACCURACY = re.compile(r"\d+\.\d ± \d+\.\d%")  # "25.5 ± 3.1%": an accuracy and its standard error
PAIRED = re.compile(r"[+-]\d+\.\d pts, p=[\d.e-]+ \(b=\d+, c=\d+\)")  # "+2.5 pts, p=0.31 (b=7, c=2)"


def test_paper_gsm8k_preset_end_to_end_on_the_embedded_task(tmp_path, model_cache):
    sweep = tmp_path / "sweep"
    result = subprocess.run(
        [sys.executable, "-m", "irpo", "experiment=[smoke,paper_gsm8k]", f"hydra.sweep.dir={sweep}"],
        capture_output=True,
        text=True,
        env={**os.environ, "IRPO_CACHE": str(model_cache)},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = (sweep / "report.md").read_text()
    for label in [
        "Zero-shot CoT",
        "SFT on gold CoT",
        "STaR (SFT on chosen of D0, 1 iteration)",
        "STaR, twice the data",
        "DPO on D0, from M0",
        "DPO on D0, from SFT on chosen",
        "Iterative RPO",
        "Iterative RPO, from SFT on chosen",
        "Iterative RPO, twice the data (1 iteration)",
    ]:
        cells = [
            [cell.strip() for cell in line.split("|")[1:-1]] for line in report.splitlines() if line.startswith("|")
        ]
        rows = [row for row in cells if row[0] == label]
        assert rows, f"no row for {label}"
        for _, iteration, greedy, majority, _k, pairs, steps_kept, *vs_irpo in rows:
            assert ACCURACY.fullmatch(greedy) and ACCURACY.fullmatch(majority), (label, iteration)
            if label != "Zero-shot CoT":  # every other row trained on its data: pairs and steps were kept
                assert pairs.isdigit() and steps_kept.isdigit() and int(pairs) * int(steps_kept) > 0, (label, pairs)
            if label != "Iterative RPO":  # every other row is tested against IRPO's row of its iteration
                assert PAIRED.match(vs_irpo[0]), (label, iteration, vs_irpo)
    assert len([line for line in report.splitlines() if line.startswith("| Iterative RPO | ")]) == 3
    for png in ["accuracy.png", "logprobs_star_vs_irpo.png", "logprobs_dpo_vs_irpo.png"]:
        assert (sweep / png).stat().st_size > 10_000, png
    assert "pairs kept" in (sweep / "pairs.txt").read_text()

    # The paper's D0: DPO, STaR and the from-SFT rows train on IRPO iteration 1's very pairs file...
    d0 = (sweep / "irpo/iter_1/pairs.jsonl").read_bytes()
    assert d0 and all(
        (sweep / m / "iter_1/pairs.jsonl").read_bytes() == d0
        for m in ("star", "dpo", "dpo_from_star", "irpo_from_star")
    )
    assert (sweep / "star_2x/iter_1/pairs.jsonl").read_bytes() == (sweep / "irpo_2x/iter_1/pairs.jsonl").read_bytes()
    assert not any((sweep / m / "iter_1/generations.jsonl").exists() for m in ("star", "star_2x", "dpo"))
    # ...the from-SFT rows start from the model SFT'd on D0's chosen side (STaR), and STaR is that SFT.
    for method in ("dpo_from_star", "irpo_from_star"):
        assert (
            read_json(sweep / method / "iter_0/metrics.json")["model"]
            == read_json(sweep / "star/iter_1/metrics.json")["model"]
        )
    star = read_json(sweep / "star/iter_1/model/train_summary.json")
    assert star["loss"] == "sft" and star["pairs"] == len(read_jsonl(sweep / "irpo/iter_1/pairs.jsonl")) > 0
    # Twice the data repeats no pair (the smoke samples allow few more than K: test_pairs checks the 2x).
    one, two = (read_json(sweep / m / "iter_1/pairs_stats.json") for m in ("irpo", "irpo_2x"))
    assert two["pairs_distinct"] == two["pairs_kept"] >= one["pairs_distinct"]
    assert not (sweep / "sft_gold/iter_1/generations.jsonl").exists()  # gold SFT needs no sampling
    assert read_jsonl(sweep / "sft_gold/iter_1/pairs.jsonl")  # ...and always has data
    assert read_json(sweep / "dpo/iter_1/model/train_summary.json")["alpha"] == 0.0
    assert read_json(sweep / "irpo/iter_1/model/train_summary.json")["alpha"] == 4.0  # model=tiny's weighting
    # Every training row ran the protocol: the step budget with selection, then the retrain.
    for method in ("sft_gold", "star", "dpo", "irpo", "irpo_2x"):
        selection = read_json(sweep / method / "iter_1/model_selection/train_summary.json")
        assert selection["steps"] == 3 and selection["selected_step"] in (2, 3), method
    assert read_json(sweep / "zero_shot/iter_0/metrics.json")["eval"]["majority_k"] == 2
    assert not (sweep / "zero_shot/iter_1").exists()


def test_rows_on_another_runs_pairs_say_which_run_to_start_first(make_config, tmp_path):
    with pytest.raises(FileNotFoundError, match="pairs.from_run=run:irpo: .* does not exist yet"):
        run(make_config(*SMOKE, "method=dpo", run_dir=tmp_path / "dpo"))


def test_rows_on_another_runs_pairs_refuse_other_data_and_a_changed_source(make_config, tmp_path):
    run(make_config(*SMOKE, "iterations=1", run_dir=tmp_path / "irpo"))
    with pytest.raises(ValueError, match=r"other data settings \(seed, task.num_train differ\)"):
        run(make_config(*SMOKE, "method=dpo", "seed=1", "task.num_train=12", run_dir=tmp_path / "dpo_other"))
    run(make_config(*SMOKE, "method=dpo", "trainer.max_steps=1", run_dir=tmp_path / "dpo"))
    source = tmp_path / "irpo/iter_1/pairs.jsonl"
    assert (tmp_path / "dpo/iter_1/pairs.jsonl").read_bytes() == source.read_bytes()
    source.write_text(source.read_text().splitlines(keepends=True)[0])  # the irpo run redone, other pairs
    (tmp_path / "dpo/iter_1/metrics.json").unlink()  # so the rerun reaches its pairs step
    with pytest.raises(ValueError, match=r"is a copy of .*which has changed since; delete .*dpo/iter_1"):
        run(make_config(*SMOKE, "method=dpo", "trainer.max_steps=1", run_dir=tmp_path / "dpo"))


def test_checkpoint_selection_and_retraining_with_held_out(make_config, tmp_path):
    cfg = make_config(
        *SMOKE,
        "iterations=1",
        "trainer.eval_every=1",
        "trainer.max_steps=3",
        "trainer.retrain_with_heldout=true",
        "task.num_valid=6",
    )
    run(cfg)
    metrics = read_json(tmp_path / "run/iter_1/metrics.json")
    scores = {int(step): score for step, score in metrics["train"]["held_out_accuracy"].items()}
    assert set(scores) == {1, 2, 3}
    # The best held-out score wins; a tie goes to the earlier (less trained) step.
    assert metrics["train"]["selected_step"] == min(s for s in scores if scores[s] == max(scores.values()))
    assert read_json(tmp_path / "run/iter_1/model/train_summary.json")["steps"] == metrics["train"]["selected_step"]
    # All 6 held-out questions were sampled, and every pair made from them joins the retraining.
    pairs = read_jsonl(tmp_path / "run/iter_1/pairs.jsonl")
    assert len(read_jsonl(tmp_path / "run/iter_1/generations.jsonl")) == 16 + 6
    assert {p["split"] for p in pairs} == {"train", "valid"}
    assert read_json(tmp_path / "run/iter_1/model/train_summary.json")["pairs"] == len(pairs)
    assert read_json(tmp_path / "run/iter_1/model_selection/train_summary.json")["pairs"] == sum(
        p["split"] == "train" for p in pairs
    )
    assert not list((tmp_path / "run/iter_1/model_selection").glob("*.safetensors*"))  # no second model copy


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
    assert dpo["greedy_vs_irpo_points"] == pytest.approx(
        100 * (dpo["greedy_accuracy"] - read_json(sweep / "irpo/iter_1/eval.json")["greedy_accuracy"])
    )
    markdown = (sweep / "report.md").read_text()
    assert "| DPO on D0, from M0 | 1 | " in markdown and "## Paired tests" in markdown
    assert "| DPO on D0, from M0, iteration 1 | Iterative RPO, iteration 2 |" in markdown
    with (sweep / "report.csv").open() as f:
        header = next(csv.reader(f))
    assert {"greedy_se", "majority_se", "greedy_vs_irpo_p", "majority_vs_irpo_b"} <= set(header)


def test_a_seed_sweep_from_the_command_line_reports_the_spread_between_seeds(tmp_path, model_cache):
    """`python -m irpo -m seed=0,1`: the sweep's report has one row per iteration over both real runs."""
    sweep = tmp_path / "sweep"
    args = ["-m", "experiment=smoke", "iterations=1", "seed=0,1", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "IRPO_CACHE": str(model_cache)}
    result = subprocess.run([sys.executable, "-m", "irpo", *args], capture_output=True, text=True, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    finals = [read_json(sweep / f"iterations=1,seed={seed}/results.json")["rows"] for seed in (0, 1)]
    with (sweep / "seeds.csv").open() as f:
        rows = {int(row["iteration"]): row for row in csv.DictReader(f)}
    assert rows[1]["runs"] == "2" and rows[1]["seeds"] == "0 1"
    greedy = [rows_[1]["greedy_accuracy"] for rows_ in finals]
    assert float(rows[1]["greedy_accuracy"]) == pytest.approx(sum(greedy) / 2)
    assert float(rows[1]["greedy_se"]) == pytest.approx(abs(greedy[0] - greedy[1]) / 2)  # sd / sqrt(2), n = 2
    gains = [100 * (rows_[1]["greedy_accuracy"] - rows_[0]["greedy_accuracy"]) for rows_ in finals]
    assert float(rows[1]["greedy_vs_m0_points"]) == pytest.approx(sum(gains) / 2, abs=0.01)
    assert "## Across seeds" in (sweep / "report.md").read_text()
    assert (sweep / "accuracy_across_seeds.png").stat().st_size > 10_000
