"""The Table-1-shaped summary of a run, rebuilt from its directory alone.

Each accuracy carries its standard error, sqrt(p (1 - p) / n) over the n test questions, and each
iteration t >= 1 is compared with M0 (iteration 0) on the same questions by the exact McNemar test
(irpo.stats), so "iteration 3 beats M0" is a tested claim and not a reading of two numbers.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from irpo.files import read_json, write_json, write_text
from irpo.rundir import IterationDir, RunDir
from irpo.stats import PairedTest, compare_iterations, format_accuracy, standard_error

COLUMNS = [
    ("iteration", "Iter"),
    ("model", "Model"),
    ("greedy_accuracy", "Test acc (greedy)"),
    ("majority_accuracy", "Test acc (maj@k)"),
    ("greedy_vs_m0", "Greedy vs M0"),
    ("majority_vs_m0", "Maj@k vs M0"),
    ("pairs", "Pairs"),
    ("prompts_skipped", "Prompts skipped"),
    ("sample_accuracy", "Train sample acc"),
    ("train_steps", "Train steps"),
]
PAIRED_LEGEND = (
    "pts: percentage points, this row minus the reference, on the questions both were scored on; "
    "p: two-sided exact McNemar test; b: questions only this row got right, c: only the reference; "
    "± is one standard error, sqrt(p(1-p)/n)."
)


def collect_rows(run_dir: RunDir) -> list[dict]:
    """One row per finished iteration of a run, from its metrics.json files (the report builds on these)."""
    rows = []
    for it in run_dir.iterations():
        if not it.metrics.exists():
            continue
        m = read_json(it.metrics)
        evaluation = m.get("eval", {})
        examples = evaluation.get("examples")
        rows.append(
            {
                "iteration": it.t,
                "model": f"M{it.t}",
                "greedy_accuracy": evaluation.get("greedy_accuracy"),
                "greedy_se": accuracy_se(evaluation.get("greedy_accuracy"), examples),
                "majority_accuracy": evaluation.get("majority_accuracy"),
                "majority_se": accuracy_se(evaluation.get("majority_accuracy"), examples),
                "majority_k": evaluation.get("majority_k"),
                "examples": examples,
                "pairs": m.get("pairs", {}).get("pairs_kept"),
                "prompts_skipped": m.get("pairs", {}).get("prompts_skipped"),
                "sample_accuracy": m.get("rewards", {}).get("sample_accuracy"),
                "train_steps": m.get("train", {}).get("steps"),
                "selected_step": m.get("train", {}).get("selected_step"),
            }
        )
    return rows


def accuracy_se(accuracy: float | None, examples: int | None) -> float | None:
    return None if accuracy is None or examples is None else standard_error(accuracy, examples)


def paired_fields(name: str, tests: dict[str, PairedTest | None]) -> dict:
    """`<measure>_<name>`: the readable cell; `<measure>_<name>_points/_b/_c/_p/_n`: the numbers, for CSV."""
    fields: dict[str, Any] = {}
    for measure, test in tests.items():
        fields[f"{measure}_{name}"] = test.describe() if test else None
        fields.update(test.as_columns(f"{measure}_{name}") if test else {})
    return fields


def finished_iteration(run_root: Path, t: int) -> IterationDir | None:
    """iter_t of a run if it has metrics.json."""
    it = RunDir(run_root).iteration(t)
    return it if it.metrics.exists() else None


def add_paired_vs_m0(run_dir: RunDir, rows: list[dict]) -> list[dict]:
    """Each row of iteration t >= 1 gains its comparison with iteration 0 on the same questions."""
    m0 = finished_iteration(run_dir.root, 0)
    for row in rows:
        if row["iteration"] > 0 and m0 is not None:
            row.update(paired_fields("vs_m0", compare_iterations(run_dir.iteration(row["iteration"]), m0)))
    return rows


def cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if value <= 1 else f"{value:.1f}"
    return str(value)


def row_cell(row: dict, key: str) -> str:
    """A table cell: accuracies with their standard error ('25.5 ± 3.1%'), everything else by `cell`."""
    if key.endswith("_accuracy") and f"{key[: -len('accuracy')]}se" in row:
        if row.get("examples") == 0:  # evaluate() writes 0.0 for an empty test set: no accuracy to show
            return "no questions"
        return format_accuracy(row[key], row[f"{key[: -len('accuracy')]}se"])
    return cell(row.get(key))


def markdown_table(columns: list[tuple[str, str]], rows: list[dict]) -> str:
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(row_cell(r, k) for k, _ in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def to_markdown(rows: list[dict], title: str) -> str:
    return (
        f"# {title}\n\n"
        + markdown_table(COLUMNS, rows)
        + f"\nvs M0: each iteration against iteration 0 on the same test questions. {PAIRED_LEGEND}\n"
    )


def write_results(run_dir: RunDir, title: str, console: Console | None = None) -> list[dict]:
    rows = add_paired_vs_m0(run_dir, collect_rows(run_dir))
    write_json(run_dir.root / "results.json", {"title": title, "rows": rows})
    write_text(run_dir.root / "results.md", to_markdown(rows, title))
    table = Table(title=title)
    for _, header in COLUMNS:
        table.add_column(header, justify="right")
    for r in rows:
        table.add_row(*(row_cell(r, k) for k, _ in COLUMNS))
    (console or Console()).print(table)
    return rows


if __name__ == "__main__":
    import sys

    root = Path(sys.argv[1])
    write_results(RunDir(root), title=f"irpo results: {root}")
