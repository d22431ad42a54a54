"""The paper's orderings over seeds. A report over several sweeps of one preset (one sweep directory a seed, each
with its own reference IRPO run, as `experiment=smollm2_arithmetic seed=S` makes) tests each comparison of
`irpo.report.tables.orderings` within every sweep, then sums it up over them: the mean difference across seeds
with its standard error (the seeds' spread), in how many seeds it holds, and one exact McNemar test on the
discordant questions pooled over the seeds (each (seed, question) a pair: the same questions, other models).
Written as a section of report.md and as orderings_across_seeds.csv."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

from irpo.report.discover import Run, reference_run
from irpo.report.tables import orderings, write_csv
from irpo.results import markdown_table
from irpo.stats import PairedTest, compare_iterations, format_p, mcnemar_exact, mean_and_se

MEASURES = ("greedy", "majority")


def sweeps(runs: list[Run]) -> list[list[Run]]:
    """The runs grouped by the directory that holds them, where a group has its reference run (one sweep)."""
    by_parent: dict[Path, list[Run]] = defaultdict(list)
    for run in runs:
        by_parent[run.path.parent].append(run)
    return [group for group in by_parent.values() if reference_run(group) is not None]


def orderings_across_seeds(runs: list[Run]) -> list[dict]:
    """One row per comparison made in two sweeps or more: its per-seed tests summed up (module docstring)."""
    groups = sweeps(runs)
    if len(groups) < 2:
        return []
    tests: dict[tuple[str, str], dict[str, list[PairedTest]]] = defaultdict(lambda: defaultdict(list))
    for group in groups:
        for row, it, against, ref in orderings(group, reference_run(group)):
            for measure, test in compare_iterations(it, ref).items():
                if test is not None and test.n:
                    tests[(row, against)][measure].append(test)
    rows = []
    for (row, against), by_measure in tests.items():
        fields = [summed_up(measure, found) for measure, found in by_measure.items() if len(found) > 1]
        if fields:
            rows.append({"row": row, "against": against, **{k: v for f in fields for k, v in f.items()}})
    return rows


def summed_up(measure: str, tests: list[PairedTest]) -> dict:
    """`<measure>`: '+3.2 ± 1.1 pts, holds in 3 of 3; pooled p=0.004 (b=40, c=21)'; `<measure>_points/_se/
    _holds/_seeds/_b/_c/_p`: its numbers, for the CSV."""
    points = [test.points for test in tests if test.points is not None]
    mean, se = mean_and_se(points)
    b, c = sum(test.b for test in tests), sum(test.c for test in tests)
    p = mcnemar_exact(b, c)
    holds = sum(point > 0 for point in points)
    spread = f" ± {se:.1f}" if se is not None else ""
    return {
        measure: f"{mean:+.1f}{spread} pts, holds in {holds} of {len(points)}; pooled p={format_p(p)} (b={b}, c={c})",
        f"{measure}_points": round(mean, 2),
        f"{measure}_se": None if se is None else round(se, 2),
        f"{measure}_holds": holds,
        f"{measure}_seeds": len(points),
        f"{measure}_b": b,
        f"{measure}_c": c,
        f"{measure}_p": round(p, 6),
    }


COLUMNS = [("row", "Row"), ("against", "Against"), ("greedy", "Greedy"), ("majority", "Maj@k")]
LEGEND = (
    "Each comparison made in every sweep (one per seed): the mean of its per-seed differences in points ± their "
    "standard error across seeds, in how many seeds the row beats what it is against, and the exact McNemar test "
    "on the discordant (seed, question) pairs pooled over the seeds (b: only the row right, c: only the other)."
)


def write_orderings(rows: list[dict], out: Path) -> str:
    """report.md's section and orderings_across_seeds.csv; without two sweeps, neither (and no stale CSV)."""
    if not rows:
        (out / "orderings_across_seeds.csv").unlink(missing_ok=True)
        return ""
    write_csv(rows, out / "orderings_across_seeds.csv")
    return f"\n## Orderings across seeds\n\n{markdown_table(COLUMNS, rows)}\n{LEGEND}\n"
