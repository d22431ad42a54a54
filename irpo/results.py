"""The Table-1-shaped summary of a run, rebuilt from its directory alone."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from irpo.rundir import RunDir, read_json, write_json

COLUMNS = [("iteration", "Iter"), ("model", "Model"), ("greedy_accuracy", "Test acc (greedy)"),
           ("majority_accuracy", "Test acc (maj@k)"), ("pairs", "Pairs"), ("prompts_skipped", "Prompts skipped"),
           ("sample_accuracy", "Train sample acc"), ("train_steps", "Train steps")]


def collect_rows(run_dir: RunDir) -> list[dict]:
    """One row per finished iteration of a run, from its metrics.json files (the report builds on these)."""
    rows = []
    for it in run_dir.iterations():
        if not it.metrics.exists():
            continue
        m = read_json(it.metrics)
        rows.append({"iteration": it.t, "model": f"M{it.t}",
                     "greedy_accuracy": m.get("eval", {}).get("greedy_accuracy"),
                     "majority_accuracy": m.get("eval", {}).get("majority_accuracy"),
                     "majority_k": m.get("eval", {}).get("majority_k"),
                     "pairs": m.get("pairs", {}).get("pairs_kept"),
                     "prompts_skipped": m.get("pairs", {}).get("prompts_skipped"),
                     "sample_accuracy": m.get("rewards", {}).get("sample_accuracy"),
                     "train_steps": m.get("train", {}).get("steps"),
                     "selected_step": m.get("train", {}).get("selected_step")})
    return rows


def cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{100 * value:.1f}%" if value <= 1 else f"{value:.1f}"
    return str(value)


def to_markdown(rows: list[dict], title: str) -> str:
    lines = [f"# {title}", "", "| " + " | ".join(h for _, h in COLUMNS) + " |",
             "|" + "|".join("---" for _ in COLUMNS) + "|"]
    lines += ["| " + " | ".join(cell(r.get(k)) for k, _ in COLUMNS) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def write_results(run_dir: RunDir, title: str, console: Console | None = None) -> list[dict]:
    rows = collect_rows(run_dir)
    write_json(run_dir.root / "results.json", {"title": title, "rows": rows})
    (run_dir.root / "results.md").write_text(to_markdown(rows, title))
    table = Table(title=title)
    for _, header in COLUMNS:
        table.add_column(header, justify="right")
    for r in rows:
        table.add_row(*(cell(r.get(k)) for k, _ in COLUMNS))
    (console or Console()).print(table)
    return rows


if __name__ == "__main__":
    import sys

    root = Path(sys.argv[1])
    write_results(RunDir(root), title=f"irpo results: {root}")
