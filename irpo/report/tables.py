"""The report's tables: one row per method and iteration (the paper's Tables 1 and 2), each tested against the
reference IRPO run, the paired tests behind the paper's orderings, and the pair statistics."""

from __future__ import annotations

import csv
import io
from itertools import pairwise
from pathlib import Path

from irpo.files import read_json, write_text
from irpo.report.discover import Run, evaluates_only, finished, reference_run
from irpo.results import PAIRED_LEGEND, collect_rows, finished_iteration, markdown_table, paired_fields
from irpo.rundir import IterationDir, RunDir
from irpo.stats import compare_iterations


def table_rows(runs: list[Run]) -> list[dict]:
    """One row per method and iteration. In a sweep every run evaluates the model it starts from as
    iteration 0; M0 is shown once (the zero-shot row, or a seed-model row), starting points taken from
    another run (init_from) not at all. Each row is tested against the reference IRPO run's same iteration."""
    rows = []
    reference = reference_run(runs)
    m0_shown = len(runs) > 1 and any(evaluates_only(run) for run in runs)
    for run in runs:
        for row in collect_rows(RunDir(run.path)):
            label = run.label
            if row["iteration"] == 0 and len(runs) > 1 and not evaluates_only(run):
                if m0_shown or run.config.get("init_from") is not None:
                    continue
                m0_shown, label = True, "Seed model M0"
            rows.append(
                {
                    "method": label,
                    "run": run.name,
                    **row,
                    "alpha": run.config.get("loss", {}).get("alpha"),
                    "beta": run.config.get("loss", {}).get("beta"),
                    **vs_reference(run, row, reference),
                }
            )
    return rows


def vs_reference(run: Run, row: dict, reference: Run | None) -> dict:
    """`greedy_vs_irpo`, `majority_vs_irpo` (+ their numbers): this row against IRPO's row of the same iteration."""
    if reference is None:
        return {}
    if run is reference:
        return {"greedy_vs_irpo": "reference", "majority_vs_irpo": "reference"}
    t = row["iteration"]
    against = finished_iteration(reference.path, t)
    if against is None:
        return {"greedy_vs_irpo": f"IRPO has no iteration {t}", "majority_vs_irpo": f"IRPO has no iteration {t}"}
    return paired_fields("vs_irpo", compare_iterations(RunDir(run.path).iteration(t), against))


def paired_tests(runs: list[Run], reference: Run | None) -> list[dict]:
    """The comparisons behind the paper's orderings (`orderings`), each as its exact McNemar test."""
    return [
        {"row": label, "against": against, **paired_fields("paired", compare_iterations(it, ref))}
        for label, it, against, ref in orderings(runs, reference)
    ]


def orderings(runs: list[Run], reference: Run | None) -> list[tuple[str, IterationDir, str, IterationDir]]:
    """(row, its iteration, against, the other's iteration): every other run's last iteration against IRPO's
    last, each IRPO iteration against the one before, and IRPO's last against its M0."""
    irpo_its = finished(reference) if reference else []
    if reference is None or not irpo_its:
        return []
    last, name = irpo_its[-1], reference.label
    pairs = [
        (f"{run.label}, iteration {its[-1].t}", its[-1], f"{name}, iteration {last.t}", last)
        for run in runs
        if run is not reference
        for its in [finished(run)]
        if its
    ]
    pairs += [(f"{name}, iteration {b.t}", b, f"{name}, iteration {a.t}", a) for a, b in pairwise(irpo_its)]
    if last.t > 1:
        pairs.append((f"{name}, iteration {last.t}", last, f"{name}, iteration 0 (M0)", irpo_its[0]))
    return pairs


TABLE = [
    ("method", "Method"),
    ("iteration", "Iteration"),
    ("greedy_accuracy", "Test acc, greedy"),
    ("majority_accuracy", "Test acc, maj@k"),
    ("majority_k", "k"),
    ("pairs", "Pairs"),
    ("selected_step", "Train steps kept"),
    ("greedy_vs_irpo", "Greedy vs IRPO, same iteration"),
    ("majority_vs_irpo", "Maj@k vs IRPO, same iteration"),
]


PAIRED = [("row", "Row"), ("against", "Against"), ("greedy_paired", "Greedy"), ("majority_paired", "Maj@k")]


def write_csv(rows: list[dict], path: Path) -> None:
    """Rows may differ in their keys (a row with no reference has no paired columns): the header is their union."""
    fields = list(dict.fromkeys(key for row in rows for key in row)) or ["method"]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields)
    writer.writeheader()
    writer.writerows(rows)
    write_text(path, buffer.getvalue())


def write_table(rows: list[dict], tests: list[dict], reference: Run | None, out: Path) -> str:
    columns = TABLE if reference else TABLE[:-2]
    markdown = markdown_table(columns, rows) + "\n"
    if reference is None:
        markdown += "No paired tests: they need one IRPO run (method irpo), or one named `irpo` among several.\n"
    else:
        markdown += (
            f"vs IRPO: against the IRPO run `{reference.name}` at the same iteration, on the same test "
            f"questions. {PAIRED_LEGEND}\n\n## Paired tests\n\n" + markdown_table(PAIRED, tests)
        )
    write_text(out / "report.md", markdown)
    write_csv(rows, out / "report.csv")
    if tests:
        write_csv(tests, out / "paired_tests.csv")
    return markdown


def pair_summary(runs: list[Run]) -> str:
    lines = []
    for run in runs:
        for it in RunDir(run.path).iterations():
            if not it.pairs_stats.exists():
                continue
            s = read_json(it.pairs_stats)
            lines.append(
                f"{run.label}, iteration {it.t}: {s['pairs_kept']} pairs kept of {s['pairs_made']} made from "
                f"{s['questions']} questions; skipped {s['skipped_no_winner']} with no winner, "
                f"{s['skipped_no_loser']} with no loser, {s['skipped_no_gold']} with no gold; "
                f"{s['dropped_too_long']} dropped as too long; mean chosen {s.get('mean_chosen_chars', '-')} "
                f"chars, rejected {s.get('mean_rejected_chars', '-')} chars"
            )
    return "\n".join(lines) + "\n"
