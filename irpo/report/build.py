"""`build_report`: every table and figure of the report, written into the directory given."""

from __future__ import annotations

from pathlib import Path

from irpo.files import write_text
from irpo.report.across_seeds import across_seeds, repeat_groups, write_across_seeds
from irpo.report.discover import find_runs, reference_run
from irpo.report.figures import plot_accuracy, plot_alpha_beta, plot_logprobs
from irpo.report.orderings import orderings_across_seeds, write_orderings
from irpo.report.tables import pair_summary, paired_tests, table_rows, write_table


def build_report(root: str | Path, quiet: bool = False) -> dict:
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run directories (config.yaml + iter_0/) at or below {root}")
    reference = reference_run(runs)
    rows, tests, seeds = table_rows(runs), paired_tests(runs, reference), across_seeds(repeat_groups(runs))
    markdown = write_table(rows, tests, reference, root)
    seeds_markdown, seeds_figures = write_across_seeds(seeds, root)
    ordered = orderings_across_seeds(runs)
    if seeds_markdown or ordered:
        markdown += seeds_markdown + write_orderings(ordered, root)
        write_text(root / "report.md", markdown)
    figures = [plot_accuracy(runs, root), *plot_logprobs(runs, root), *plot_alpha_beta(runs, root), *seeds_figures]
    write_text(root / "pairs.txt", pair_summary(runs))
    if not quiet:
        print(markdown)
        print("figures:", ", ".join(str(f) for f in figures))
    return {
        "rows": rows,
        "paired_tests": tests,
        "across_seeds": seeds,
        "orderings_across_seeds": ordered,
        "figures": figures,
    }
