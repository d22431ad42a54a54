"""The run directory's layout (irpo.rundir) and the results table rebuilt from it alone (irpo.results)."""

from __future__ import annotations

import json

import pytest

from irpo.results import collect_rows, finished_iteration, row_cell
from irpo.rundir import RunDir, budget_train_log


def write_iteration(run: RunDir, t: int, metrics: dict | None) -> None:
    it = run.iteration(t).create()
    if metrics is not None:
        it.metrics.write_text(json.dumps({"iteration": t, **metrics}))


def test_iterations_are_found_in_numeric_order_and_each_has_its_files(tmp_path):
    run = RunDir(tmp_path / "run")
    for t in (10, 2, 0, 1):
        run.iteration(t).create()
    (run.root / "iter_3").write_text("a file, not an iteration")
    assert [it.t for it in run.iterations()] == [0, 1, 2, 10]
    it = run.iteration(2)
    assert it.path == tmp_path / "run/iter_2" and it.path.is_dir()
    assert (it.generations.name, it.pairs.name, it.eval_predictions.name, it.metrics.name) == (
        "generations.jsonl",
        "pairs.jsonl",
        "eval.jsonl",
        "metrics.json",
    )
    assert run.config == tmp_path / "run/config.yaml"


def test_naming_a_run_or_an_iteration_creates_nothing_and_create_makes_the_folder(tmp_path):
    run = RunDir(tmp_path / "run")
    it = run.iteration(1)
    assert (it.metrics.exists(), run.iterations(), it.has_model()) == (False, [], False)
    assert not (tmp_path / "run").exists()  # reading a run that is not there leaves nothing behind
    assert run.create() is run and it.create() is it and it.path.is_dir()


def test_a_model_counts_once_its_config_and_training_summary_are_both_there(tmp_path):
    it = RunDir(tmp_path / "run").iteration(1)
    it.model.mkdir(parents=True)
    (it.model / "config.json").write_text("{}")
    assert not it.has_model()  # killed before training finished writing
    (it.model / "train_summary.json").write_text("{}")
    assert it.has_model()


def test_the_budget_log_is_the_selection_runs_when_there_was_one(tmp_path):
    it = RunDir(tmp_path / "run").iteration(1)
    assert budget_train_log(it.path) == it.model / "train_log.jsonl"
    (it.path / "model_selection").mkdir(parents=True)
    (it.path / "model_selection/train_log.jsonl").write_text("")
    assert budget_train_log(it.path) == it.path / "model_selection/train_log.jsonl"


def test_rows_come_from_finished_iterations_only(tmp_path):
    run = RunDir(tmp_path / "run")
    write_iteration(
        run, 0, {"eval": {"greedy_accuracy": 0.25, "majority_accuracy": 0.5, "majority_k": 4, "examples": 4}}
    )
    write_iteration(
        run,
        1,
        {
            "eval": {"greedy_accuracy": 0.5, "majority_accuracy": None, "majority_k": 0, "examples": 4},
            "pairs": {"pairs_kept": 12, "prompts_skipped": 3},
            "rewards": {"sample_accuracy": 0.125},
            "train": {"steps": 8, "selected_step": 4},
        },
    )
    write_iteration(run, 2, None)  # still running: no metrics.json yet
    rows = collect_rows(run)
    assert [r["iteration"] for r in rows] == [0, 1]
    m0, m1 = rows
    assert (m0["model"], m0["pairs"], m0["train_steps"]) == ("M0", None, None)
    assert (m1["pairs"], m1["prompts_skipped"], m1["sample_accuracy"], m1["train_steps"], m1["selected_step"]) == (
        12,
        3,
        0.125,
        8,
        4,
    )
    assert m1["greedy_se"] == 0.25 and m1["majority_se"] is None  # sqrt(0.5 * 0.5 / 4); no vote, no error bar
    assert [row_cell(m1, k) for k in ("greedy_accuracy", "majority_accuracy", "pairs", "sample_accuracy")] == [
        "50.0 ± 25.0%",
        "-",
        "12",
        "12.5%",
    ]
    assert finished_iteration(run.root, 2) is None and finished_iteration(run.root, 1).t == 1
    assert finished_iteration(run.root, 7) is None and not (run.root / "iter_7").exists()  # looking creates nothing


def tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else b"" for p in sorted(root.rglob("*"))}


def test_reading_another_run_for_its_pairs_or_a_report_leaves_it_as_it_was(tmp_path):
    """pairs.from_run on a source run that has no iteration 1 yet fails naming it and creates nothing there; a
    report over a run writes its own files and nothing inside the run's iterations."""
    from irpo.pairs import copy_pairs
    from irpo.report import build_report

    source = RunDir(tmp_path / "irpo")
    write_iteration(source, 0, {"eval": {"greedy_accuracy": 0.5, "majority_accuracy": None, "examples": 2}})
    (source.root / "config.yaml").write_text("method: irpo\n")
    before = tree(source.root)
    with pytest.raises(FileNotFoundError, match="run that method first"):
        copy_pairs(RunDir(tmp_path / "dpo").iteration(1).create(), source.iteration(1), "run:irpo")
    assert tree(source.root) == before
    build_report(source.root, quiet=True)
    report_files = {"report.md", "report.csv", "accuracy.png", "pairs.txt"}
    assert {k: v for k, v in tree(source.root).items() if k not in report_files} == before
