"""Uncertainty in the tables: standard errors and exact McNemar tests on hand-worked numbers, then the results
table and the sweep report built from hand-made run directories whose answers give those numbers."""

import csv
import json
import math
from pathlib import Path

import pytest
from matplotlib.container import ErrorbarContainer
from omegaconf import OmegaConf

from irpo.config import experiment_key
from irpo.files import read_json, write_json
from irpo.report import build_report, find_runs
from irpo.report.figures import accuracy_figure, alpha_beta_figure
from irpo.results import write_results
from irpo.rundir import RunDir
from irpo.stats import correctness, format_accuracy, main, mcnemar_exact, mean_and_se, paired_test, standard_error

CONF = Path(__file__).resolve().parents[1] / "conf"


def test_standard_error_of_an_accuracy():
    assert standard_error(0.25, 200) == pytest.approx(math.sqrt(0.25 * 0.75 / 200)) == pytest.approx(0.0306, abs=5e-5)
    assert format_accuracy(0.255, standard_error(0.255, 200)) == "25.5 ± 3.1%"
    assert standard_error(0.0, 200) == standard_error(1.0, 200) == 0.0  # all wrong or all right: no spread
    assert standard_error(0.5, 0) is None  # no questions, no estimate
    assert format_accuracy(None, None) == "-" and format_accuracy(0.5, None) == "50.0%"
    with pytest.raises(ValueError, match="0 <= p <= 1"):
        standard_error(1.5, 10)
    with pytest.raises(ValueError, match="n >= 0"):
        standard_error(0.5, -1)


def test_exact_mcnemar_on_hand_worked_counts():
    # b=10, c=2: 12 discordant questions; P(X <= 2) = (1 + 12 + 66) / 4096; two-sided doubles it.
    assert mcnemar_exact(10, 2) == 2 * 79 / 4096 == pytest.approx(0.0386, abs=5e-5)
    assert mcnemar_exact(2, 10) == mcnemar_exact(10, 2)
    assert mcnemar_exact(6, 0) == 2 / 64  # six out of six one way
    assert mcnemar_exact(1, 0) == 1.0  # one discordant question proves nothing
    assert mcnemar_exact(0, 0) == 1.0  # identical answers
    assert mcnemar_exact(5, 5) == 1.0  # doubling the tail would pass 1: capped
    with pytest.raises(ValueError, match="discordant"):
        mcnemar_exact(-1, 3)


def test_exact_mcnemar_agrees_with_scipys_binomial_test():
    binomtest = pytest.importorskip("scipy.stats").binomtest
    for b in range(0, 25, 3):
        for c in range(0, 25, 4):
            if b + c:
                assert mcnemar_exact(b, c) == pytest.approx(binomtest(b, b + c, 0.5).pvalue, abs=1e-12), (b, c)


def test_paired_test_intersects_question_ids():
    mine = {"q0": True, "q1": True, "q2": False, "q3": True, "only-mine": True}
    theirs = {"q0": True, "q1": False, "q2": True, "q3": False, "extra-1": False, "extra-2": True}
    result = paired_test(mine, theirs)
    assert (result.n, result.b, result.c, result.only_a, result.only_b) == (4, 2, 1, 1, 2)
    assert result.points == pytest.approx(25.0) and result.accuracy_a == 0.75 and result.accuracy_b == 0.5
    assert result.p_value == 1.0  # 2 against 1
    assert result.describe() == (
        "+25.0 pts, p=1.00 (b=2, c=1) on the 4 common questions (1 only in this row, 2 only in the reference)"
    )
    assert result.as_columns("vs") == {"vs_points": 25.0, "vs_b": 2, "vs_c": 1, "vs_p": 1.0, "vs_n": 4}


def test_paired_test_with_nothing_to_compare():
    disjoint = paired_test({"a": True}, {"b": False})
    assert (disjoint.n, disjoint.points, disjoint.p_value) == (0, None, 1.0)
    assert disjoint.describe() == "no common questions (1 only in this row, 1 only in the reference)"
    same = paired_test({"a": True, "b": False}, {"b": False, "a": True})
    assert same.describe() == "+0.0 pts, p=1.00 (b=0, c=0)"


def write_run(
    root,
    method,
    answers: dict[int, list[bool]],
    majority: dict[int, list[bool]] | None = None,
    ids: dict[int, list[str]] | None = None,
    alpha=1.0,
    beta=0.1,
    seed=0,
    pairs_seed=None,
    extra=None,
):
    """A run directory as the loop writes it (config.yaml, iter_t/eval.jsonl, eval.json, metrics.json),
    with the given greedy (and majority) right/wrong answer per test question."""
    root.mkdir(parents=True)
    method_conf = OmegaConf.load(CONF / "method" / f"{method}.yaml")  # its label and place in tables
    report_keys = ("method", "label", "report_order", "report_reference", "logprob_figure", "iterations")
    config = {key: method_conf[key] for key in report_keys if key in method_conf}
    pairs = {"seed": seed if pairs_seed is None else pairs_seed}
    config.update(loss={"alpha": alpha, "beta": beta}, seed=seed, pairs=pairs)
    config.update(extra or {})
    (root / "config.yaml").write_text(OmegaConf.to_yaml(config))
    for t, greedy in answers.items():
        it = root / f"iter_{t}"
        it.mkdir()
        voted = (majority or {}).get(t)
        question_ids = (ids or {}).get(t) or [f"test-{i}" for i in range(len(greedy))]
        rows = [
            {"id": q, "greedy_correct": g, "majority_correct": bool(voted and voted[i])}
            for i, (q, g) in enumerate(zip(question_ids, greedy, strict=True))
        ]
        (it / "eval.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        n = len(rows)
        metrics = {
            "examples": n,
            "greedy_accuracy": round(sum(greedy) / max(n, 1), 4),
            "majority_accuracy": round(sum(voted) / n, 4) if voted else None,
            "majority_k": 2 if voted else 0,
        }
        (it / "eval.json").write_text(json.dumps(metrics))
        (it / "metrics.json").write_text(json.dumps({"iteration": t, "eval": metrics}))
    return root


# 20 questions. M0 gets the first 5 right (25%); M1 the first 3 and the next 10 (65%): 10 questions only M1
# gets right, 2 only M0 does, so M1 - M0 = +40 points, exact McNemar p = 0.0386.
M0 = [True] * 5 + [False] * 15
M1 = [True] * 3 + [False] * 2 + [True] * 10 + [False] * 5


def test_results_table_has_standard_errors_and_each_iteration_against_m0(tmp_path):
    run = write_run(tmp_path / "run", "irpo", {0: M0, 1: M1}, majority={0: M0, 1: M0})
    rows = write_results(RunDir(run), title="t")
    markdown = (run / "results.md").read_text()
    assert "| 0 | M0 | 25.0 ± 9.7% | 25.0 ± 9.7% | - | - |" in markdown
    assert (
        "| 1 | M1 | 65.0 ± 10.7% | 25.0 ± 9.7% | +40.0 pts, p=0.039 (b=10, c=2) | +0.0 pts, p=1.00 (b=0, c=0) |"
        in markdown
    )
    assert rows[1]["greedy_vs_m0_p"] == 0.0386 and rows[1]["greedy_se"] == pytest.approx(math.sqrt(0.65 * 0.35 / 20))
    assert read_json(run / "results.json")["rows"][1]["greedy_vs_m0_b"] == 10
    assert not list(run.glob("*.tmp"))  # written under a temporary name and renamed


def test_results_without_majority_vote_or_questions(tmp_path):
    run = write_run(tmp_path / "run", "irpo", {0: [], 1: []})
    rows = write_results(RunDir(run), title="t")
    assert rows[1]["greedy_se"] is None and rows[1]["majority_vs_m0"] is None  # majority_k = 0: nothing to test
    assert (
        "| 1 | M1 | no questions | no questions | no common questions (0 only in this row, 0 only in the "
        "reference) | - |" in (run / "results.md").read_text()
    )


def test_a_question_scored_twice_is_an_error(tmp_path):
    run = write_run(tmp_path / "run", "irpo", {0: [True, False]}, ids={0: ["q", "q"]})
    with pytest.raises(ValueError, match="'q' appears twice"):
        correctness(run / "iter_0/eval.jsonl", "greedy_correct")


def test_report_tests_every_row_against_irpo_at_the_same_iteration(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "zero_shot", "zero_shot", {0: M0}, majority={0: M0})
    write_run(sweep / "irpo", "irpo", {0: M0, 1: M0, 2: M1}, majority={0: M0, 1: M0, 2: M1})
    write_run(sweep / "star", "star", {0: M0, 1: M1}, majority={0: M0, 1: M1})
    # SFT on gold evaluated on 15 of the questions, one of them not in IRPO's test set, and ran 3 iterations.
    gold_ids = [f"test-{i}" for i in range(14)] + ["other"]
    write_run(sweep / "sft_gold", "sft_gold", {0: M0[:15], 1: M1[:15], 3: M1[:15]}, ids={1: gold_ids})
    report = build_report(sweep, quiet=True)
    markdown = (sweep / "report.md").read_text()

    assert "| Zero-shot CoT | 0 | 25.0 ± 9.7% | 25.0 ± 9.7% | 2 | - | - | +0.0 pts, p=1.00 (b=0, c=0) |" in markdown
    assert (
        "| STaR (SFT on chosen of D0, 1 iteration) | 1 | 65.0 ± 10.7% | 65.0 ± 10.7% | 2 | - | - | "
        "+40.0 pts, p=0.039 (b=10, c=2) | +40.0 pts, p=0.039 (b=10, c=2) |" in markdown
    )
    assert "| Iterative RPO | 2 | 65.0 ± 10.7% | 65.0 ± 10.7% | 2 | - | - | reference | reference |" in markdown
    # Iteration 1 of SFT on gold: 14 questions shared with IRPO, where it gains on test-5..test-13 (9) and loses
    # test-3 and test-4 (2).
    assert (
        "| SFT on gold CoT | 1 | 86.7 ± 8.8% | - | 0 | - | - | +50.0 pts, p=0.065 (b=9, c=2) on the 14 common "
        "questions (1 only in this row, 6 only in the reference) | - |" in markdown
    )
    assert (
        "| SFT on gold CoT | 3 | 86.7 ± 8.8% | - | 0 | - | - | IRPO has no iteration 3 | IRPO has no iteration 3 |"
        in markdown
    )

    paired = {(row["row"], row["against"]): row for row in report["paired_tests"]}
    star = "STaR (SFT on chosen of D0, 1 iteration), iteration 1"
    assert paired[(star, "Iterative RPO, iteration 2")]["greedy_paired"] == "+0.0 pts, p=1.00 (b=0, c=0)"
    assert paired[("Iterative RPO, iteration 2", "Iterative RPO, iteration 1")]["greedy_paired_p"] == 0.0386
    assert paired[("Iterative RPO, iteration 2", "Iterative RPO, iteration 0 (M0)")]["greedy_paired_b"] == 10
    assert paired[("Zero-shot CoT, iteration 0", "Iterative RPO, iteration 2")]["greedy_paired_points"] == -40.0
    assert "## Paired tests" in markdown and (sweep / "paired_tests.csv").exists()

    with (sweep / "report.csv").open() as f:
        rows = list(csv.DictReader(f))
    star = next(r for r in rows if r["run"] == "star" and r["iteration"] == "1")
    assert float(star["greedy_se"]) == pytest.approx(math.sqrt(0.65 * 0.35 / 20))
    assert (
        star["greedy_vs_irpo_points"],
        star["greedy_vs_irpo_b"],
        star["greedy_vs_irpo_c"],
        star["greedy_vs_irpo_p"],
        star["greedy_vs_irpo_n"],
    ) == ("40.0", "10", "2", "0.0386", "20")

    runs = find_runs(sweep)
    axes = accuracy_figure(runs).axes[0]
    bars = [c for c in axes.containers if isinstance(c, ErrorbarContainer)]
    assert len(bars) == 4 + 3  # greedy for every run, majority for the three that voted
    assert all(c.has_yerr for c in bars)
    segments = bars[0].lines[2][0].get_segments()  # zero-shot greedy: one bar, 25% ± 9.7 points
    assert len(segments) == 1 and segments[0][:, 1] == pytest.approx([25 - 9.682, 25 + 9.682], abs=1e-3)


def test_alpha_beta_sweep_has_no_reference_and_errors_in_its_cells(tmp_path):
    sweep = tmp_path / "ablation"
    write_run(sweep / "alpha=0", "irpo", {0: M0, 1: M0}, alpha=0.0)
    write_run(sweep / "alpha=1", "irpo", {0: M0, 1: M1}, alpha=1.0)
    report = build_report(sweep, quiet=True)
    assert report["paired_tests"] == [] and "No paired tests" in (sweep / "report.md").read_text()
    assert "vs IRPO" not in (sweep / "report.md").read_text()
    assert (sweep / "alpha_beta.png").exists()
    assert report["across_seeds"] == [] and "Across seeds" not in (sweep / "report.md").read_text()
    texts = [t.get_text() for t in alpha_beta_figure(find_runs(sweep)).axes[0].texts]
    assert sorted(texts) == ["25.0\n±9.7", "65.0\n±10.7"]


def test_command_line_compares_two_evaluations(tmp_path, capsys):
    first = write_run(tmp_path / "a", "irpo", {0: M0, 1: M1}, majority={0: M0, 1: M1})
    second = write_run(tmp_path / "b", "dpo", {0: M0, 1: M0})
    main([str(first / "iter_1"), str(second / "iter_1")])
    assert capsys.readouterr().out.splitlines() == [
        "greedy: A 65.0%, B 25.0% on the common questions; A - B: +40.0 pts, p=0.039 (b=10, c=2)",
        "majority: not scored in both (majority vote needs eval.majority_k > 0)",
    ]
    with pytest.raises(SystemExit, match="no eval.jsonl"):
        main([str(first / "iter_1"), str(second / "iter_7")])
    assert not (second / "iter_7").exists()


def test_runs_made_before_labels_are_named_by_their_method(tmp_path):
    write_run(tmp_path / "sweep" / "irpo", "irpo", {0: M0, 1: M1})
    config = tmp_path / "sweep" / "irpo" / "config.yaml"
    config.write_text("method: irpo\n")  # an older run's config: no label, no report_order
    write_run(tmp_path / "sweep" / "star", "star", {0: M0, 1: M1})
    runs = find_runs(tmp_path / "sweep")
    assert [run.label for run in runs] == ["irpo", "STaR (SFT on chosen of D0, 1 iteration)"]


def test_mean_and_standard_error_of_repeated_runs():
    assert mean_and_se([40.0, 0.0, 20.0]) == pytest.approx((20.0, 20.0 / math.sqrt(3)))
    assert mean_and_se([7.0]) == (7.0, None)
    with pytest.raises(ValueError, match="at least one value"):
        mean_and_se([])


def test_runs_that_differ_only_in_their_seeds_repeat_one_experiment(make_config):
    def key(*overrides):
        return experiment_key(OmegaConf.to_container(make_config(*overrides), resolve=True))

    # The seed (which pairs.seed follows), the pair subsample's seed alone, where it runs and how many
    # iterations: the same experiment. Anything that changes what is computed: another.
    assert key("seed=3") == key("pairs.seed=3") == key("cluster.nodes=2", "iterations=5") == key()
    assert key("loss.beta=0.5") != key() and key("seed=3", "loss.beta=0.5") == key("loss.beta=0.5")
    assert key("trainer.lr=1e-3") != key()
    assert key("model.tiny.cache_dir=/elsewhere") == key()  # where this machine caches M0, not the experiment


def test_an_auto_setting_counts_as_what_the_runs_machine_resolved_it_to(make_config):
    """trainer.torch.mixed_precision=auto ran in bf16 on one machine and in float32 on another: two experiments;
    auto resolved to bf16 and an explicit bf16 computed the same: one (resolved.json holds what auto became)."""

    def key(resolved: dict, *overrides):
        return experiment_key(OmegaConf.to_container(make_config(*overrides), resolve=True), resolved)

    bf16, none = {"trainer.torch.mixed_precision": "bf16"}, {"trainer.torch.mixed_precision": "none"}
    assert key(bf16) != key(none) and key(bf16) == key(bf16, "trainer.torch.mixed_precision=bf16")
    assert key({"trainer.torch.device": "cuda"}) == key({"trainer.torch.device": "cpu"})  # where, not what


def test_the_report_groups_seeds_by_what_auto_resolved_to(tmp_path):
    sweep = tmp_path / "sweep"
    for seed, autocast in ((0, "bf16"), (1, "bf16"), (2, "none")):
        write_run(sweep / f"seed={seed}", "irpo", {0: M0, 1: M1}, seed=seed)
        write_json(sweep / f"seed={seed}" / "resolved.json", {"trainer.torch.mixed_precision": autocast})
    (group,) = [row for row in build_report(sweep, quiet=True)["across_seeds"] if row["iteration"] == 1]
    assert (group["runs"], group["seeds"]) == (2, "0 1")  # seed 2 computed in float32: not a repeat of these


# 9 of the 20 questions right (45%): between M0's 25% and M1's 65%.
MID = [True] * 9 + [False] * 11


def test_report_summarises_runs_over_seeds_with_the_spread_between_them(tmp_path):
    sweep = tmp_path / "sweep"
    # Three seeds of one setting (the third stopped after iteration 1), two of another, one of a third.
    write_run(sweep / "alpha=1,seed=0", "irpo", {0: M0, 1: M1, 2: M1}, majority={0: M0, 1: M1, 2: M1}, seed=0)
    write_run(sweep / "alpha=1,seed=1", "irpo", {0: M0, 1: M0}, majority={0: M0, 1: M0}, seed=1)
    write_run(sweep / "alpha=1,seed=2", "irpo", {0: M0, 1: MID}, majority={0: M0, 1: M0}, seed=2)
    write_run(sweep / "alpha=0,seed=0", "irpo", {0: M0, 1: M0}, alpha=0.0, seed=0)
    write_run(sweep / "alpha=0,seed=1", "irpo", {0: M0, 1: M1}, alpha=0.0, seed=1)
    write_run(sweep / "star", "star", {0: M0, 1: M1})
    report = build_report(sweep, quiet=True)

    rows = {(row["method"], row["iteration"]): row for row in report["across_seeds"]}
    alpha1, alpha0 = "Iterative RPO [loss.alpha=1.0]", "Iterative RPO [loss.alpha=0.0]"
    assert sorted(rows) == sorted([(alpha0, 0), (alpha0, 1), (alpha1, 0), (alpha1, 1), (alpha1, 2)])
    one = rows[(alpha1, 1)]  # greedy 65%, 25%, 45%: gains over M0 of +40, +0 and +20 points
    assert (one["runs"], one["seeds"]) == (3, "0 1 2")
    assert one["greedy_accuracy"] == pytest.approx(0.45) and one["greedy_se"] == pytest.approx(0.2 / math.sqrt(3))
    assert one["greedy_vs_m0"] == "+20.0 ± 11.5 pts (+0.0 to +40.0)"
    assert one["majority_vs_m0"] == "+13.3 ± 13.3 pts (+0.0 to +40.0)"
    assert rows[(alpha1, 2)]["runs"] == 1 and rows[(alpha1, 2)]["greedy_vs_m0"] == "+40.0 pts (+40.0 to +40.0)"
    assert rows[(alpha0, 1)]["majority_accuracy"] is None and rows[(alpha0, 1)]["majority_vs_m0"] is None

    markdown = (sweep / "report.md").read_text()
    assert "## Across seeds" in markdown
    assert f"| {alpha1} | 1 | 3 | 45.0 ± 11.5% | +20.0 ± 11.5 pts (+0.0 to +40.0) |" in markdown
    assert f"| {alpha1} | 2 | 1 | 65.0% | +40.0 pts (+40.0 to +40.0) |" in markdown
    with (sweep / "seeds.csv").open() as f:
        csv_rows = list(csv.DictReader(f))
    assert [(r["greedy_vs_m0_points"], r["greedy_vs_m0_se"]) for r in csv_rows if r["iteration"] == "1"] == [
        ("20.0", "20.0"),  # alpha=0: +0 and +40
        ("20.0", "11.55"),
    ]
    assert sweep / "accuracy_across_seeds.png" in report["figures"]


def test_reruns_of_one_seed_are_flagged_and_groups_alike_in_every_shown_setting_are_numbered(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "a", "irpo", {0: M0, 1: M1}, seed=1)
    write_run(sweep / "b", "irpo", {0: M0, 1: M0}, seed=1)
    write_run(sweep / "c", "irpo", {0: M0, 1: MID}, seed=0, pairs_seed=5)
    # An optional key unset (null) and not recorded at all (an older release): one experiment.
    unset, absent = {"name": "tiny", "gguf_file": None}, {"name": "tiny"}
    write_run(sweep / "d", "irpo", {0: M0, 1: M1}, seed=0, extra={"model": unset, "iterations": 9})
    write_run(sweep / "e", "irpo", {0: M0, 1: M1}, seed=1, extra={"model": absent})
    # alpha 1 (int) against 1.0: equal as values, so no setting tells the groups apart; they are numbered.
    write_run(sweep / "f", "irpo", {0: M0, 1: M1}, seed=0, alpha=1, extra={"model": absent})
    write_run(sweep / "g", "irpo", {0: M0, 1: M1}, seed=1, alpha=1, extra={"model": absent})
    rows = build_report(sweep, quiet=True)["across_seeds"]
    assert [(row["method"], row["seeds"]) for row in rows if row["iteration"] == 1] == [
        ("Iterative RPO [model.name unset]", "0/5 1 1 (a seed repeated)"),
        ("Iterative RPO [model.name=tiny] (group 1)", "0 1"),
        ("Iterative RPO [model.name=tiny] (group 2)", "0 1"),
    ]


def test_a_run_recorded_before_a_key_existed_repeats_the_experiment_at_that_keys_default(tmp_path):
    sweep = tmp_path / "sweep"
    write_run(sweep / "old", "irpo", {0: M0, 1: M1}, seed=0)  # no skip_seed_sft: recorded before it existed
    write_run(sweep / "new", "irpo", {0: M0, 1: MID}, seed=1, extra={"skip_seed_sft": False})
    for seed in (2, 3):
        write_run(sweep / f"other{seed}", "irpo", {0: M0, 1: M0}, seed=seed, extra={"skip_seed_sft": True})
    rows = build_report(sweep, quiet=True)["across_seeds"]
    assert [(row["method"], row["seeds"]) for row in rows if row["iteration"] == 1] == [
        ("Iterative RPO [skip_seed_sft=False]", "0 1"),
        ("Iterative RPO [skip_seed_sft=True]", "2 3"),
    ]


def test_orderings_are_summed_up_over_the_sweeps_of_several_seeds(tmp_path):
    """One sweep a seed (irpo and star, as experiment=smollm2_arithmetic seed=S writes them): each comparison is
    tested per seed, then its differences averaged and its discordant questions pooled over the seeds."""
    root = tmp_path / "preset"
    # STaR against IRPO: 25% against 65% at seed 0 (b=2, c=10), 65% against 45% at seed 1 (b=6, c=2)
    for seed, irpo_last, star_last in ((0, M1, M0), (1, MID, M1)):
        write_run(root / f"seed{seed}" / "irpo", "irpo", {0: M0, 1: irpo_last}, seed=seed)
        write_run(root / f"seed{seed}" / "star", "star", {0: M0, 1: star_last}, seed=seed)
    report = build_report(root, quiet=True)
    rows = {(row["row"], row["against"]): row for row in report["orderings_across_seeds"]}
    star = rows[("STaR (SFT on chosen of D0, 1 iteration), iteration 1", "Iterative RPO, iteration 1")]
    # STaR minus IRPO: -40 points at seed 0, +20 at seed 1; pooled b = 2 + 6, c = 10 + 2
    assert (star["greedy_points"], star["greedy_se"], star["greedy_holds"], star["greedy_seeds"]) == (-10.0, 30.0, 1, 2)
    assert (star["greedy_b"], star["greedy_c"]) == (8, 12)
    assert star["greedy_p"] == pytest.approx(mcnemar_exact(8, 12), abs=1e-6)
    assert star["greedy"].startswith("-10.0 ± 30.0 pts, holds in 1 of 2; pooled p=")
    markdown = (root / "report.md").read_text()
    assert "## Orderings across seeds" in markdown and (root / "orderings_across_seeds.csv").exists()
    # One sweep alone has nothing to sum up, and leaves no stale CSV behind.
    assert build_report(root / "seed0", quiet=True)["orderings_across_seeds"] == []
    assert not (root / "seed0" / "orderings_across_seeds.csv").exists()
