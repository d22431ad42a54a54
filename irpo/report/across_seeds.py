"""Runs that repeat one experiment with other seeds (irpo.config.experiment_key: what they computed, each `auto`
as their machine resolved it): each accuracy's mean over the runs and its standard error across them, and the
mean gain over each run's M0 (seeds.csv, a section of report.md, accuracy_across_seeds.png)."""

from __future__ import annotations

from pathlib import Path

from irpo.config import changed_keys, experiment_identity, experiment_key
from irpo.report.discover import Run
from irpo.report.figures import save_figure, series_figure
from irpo.report.tables import write_csv
from irpo.results import collect_rows, markdown_table
from irpo.rundir import RunDir
from irpo.stats import mean_and_se


def repeat_groups(runs: list[Run]) -> list[list[Run]]:
    """Runs that repeat one experiment with other seeds (irpo.config.experiment_key: what they computed, each `auto`
    as their machine resolved it), two or more a group."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(experiment_key(run.config, run.resolved), []).append(run)
    return [group for group in groups.values() if len(group) > 1]


def group_labels(groups: list[list[Run]]) -> list[str]:
    """Each group's method label, with the settings that tell it from the other groups of the same method
    (still alike in every key a label shows: numbered)."""
    identities = [experiment_identity(group[0].config, group[0].resolved) for group in groups]
    labels = [group[0].config.get("label") or group[0].method for group in groups]
    named = []
    for i, (identity, label) in enumerate(zip(identities, labels, strict=True)):
        others = [other for j, other in enumerate(identities) if j != i and labels[j] == label]
        differ = sorted({key for other in others for key in changed_keys(identity, other)})
        settings = ", ".join(f"{key}={identity[key]}" if key in identity else f"{key} unset" for key in differ)
        named.append(f"{label} [{settings}]" if settings else label)
    alike = [named.count(name) > 1 for name in named]
    return [f"{name} (group {named[:i].count(name) + 1})" if alike[i] else name for i, name in enumerate(named)]


def seeds_cell(runs: list[Run]) -> str:
    """The runs' seeds in order ("seed/pairs.seed" where they differ); reruns of one seed are flagged, as their
    spread is not the seeds'."""
    seeds = sorted(
        ((run.config.get("seed"), (run.config.get("pairs") or {}).get("seed", run.config.get("seed"))) for run in runs),
        key=lambda both: [(0, v, "") if isinstance(v, int) else (1, 0, str(v)) for v in both],  # old runs: None
    )
    text = " ".join(str(seed) if seed == pairs else f"{seed}/{pairs}" for seed, pairs in seeds)
    return text + (" (a seed repeated)" if len(set(seeds)) < len(seeds) else "")


def across_seeds(groups: list[list[Run]]) -> list[dict]:
    """One row per group and iteration: each accuracy's mean over the group's runs and its standard error
    across them (the spread between seeds, not the test set's), and the mean gain over each run's own M0."""
    rows = []
    for group, label in zip(groups, group_labels(groups), strict=True):
        per_run = [({row["iteration"]: row for row in collect_rows(RunDir(run.path))}, run) for run in group]
        for t in sorted({t for by_t, _ in per_run for t in by_t}):
            present = [(by_t, run) for by_t, run in per_run if t in by_t]
            row: dict = {"method": label, "iteration": t, "runs": len(present)}
            row["seeds"] = seeds_cell([run for _, run in present])
            for measure in ("greedy", "majority"):
                key = f"{measure}_accuracy"
                values = [by_t[t][key] for by_t, _ in present if by_t[t][key] is not None]
                row[key], row[f"{measure}_se"] = mean_and_se(values) if values else (None, None)
                gains = [
                    100 * (by_t[t][key] - by_t[0][key])
                    for by_t, _ in present
                    if t > 0 and 0 in by_t and by_t[t][key] is not None and by_t[0][key] is not None
                ]
                row.update(gain_fields(f"{measure}_vs_m0", gains))
            rows.append(row)
    return rows


def gain_fields(name: str, gains: list[float]) -> dict:
    """`<name>`: '+7.7 ± 2.7 pts (-3.0 to +13.5)', the mean gain in points, its standard error and the range;
    `<name>_points/_se/_min/_max`: the numbers, for CSV."""
    if not gains:
        return {name: None}
    mean, se = mean_and_se(gains)
    spread = f" ± {se:.1f}" if se is not None else ""
    return {
        name: f"{mean:+.1f}{spread} pts ({min(gains):+.1f} to {max(gains):+.1f})",
        f"{name}_points": round(mean, 2),
        f"{name}_se": None if se is None else round(se, 2),
        f"{name}_min": round(min(gains), 2),
        f"{name}_max": round(max(gains), 2),
    }


ACROSS_SEEDS = [
    ("method", "Method"),
    ("iteration", "Iteration"),
    ("runs", "Runs"),
    ("greedy_accuracy", "Test acc, greedy"),
    ("greedy_vs_m0", "Greedy gain over M0"),
    ("majority_accuracy", "Test acc, maj@k"),
    ("majority_vs_m0", "Maj@k gain over M0"),
    ("seeds", "Seeds"),
]


ACROSS_SEEDS_LEGEND = (
    "Runs that differ only in their seed: each accuracy is the mean over the runs, ± the standard error of that "
    "mean across runs (sample stdev / sqrt(runs)), which is the seeds' spread and not the test set's; a gain is "
    "each run's iteration minus its own iteration 0 (M0, or the model it starts from), in points, as mean ± "
    "standard error (lowest to highest run)."
)


def write_across_seeds(rows: list[dict], out: Path) -> tuple[str, list[Path]]:
    """report.md's section on repeated runs, seeds.csv and accuracy_across_seeds.png (points over two runs or
    more); without repeats, none of them (and no stale ones from an earlier report)."""
    if not rows:
        (out / "seeds.csv").unlink(missing_ok=True)
        (out / "accuracy_across_seeds.png").unlink(missing_ok=True)
        return "", []
    write_csv(rows, out / "seeds.csv")
    series: dict[str, list[dict]] = {}
    for row in rows:
        if row["runs"] > 1:
            series.setdefault(row["method"], []).append(row)
    figure = series_figure(
        list(series.items()),
        "Test accuracy over seeds (solid: greedy, dashed: majority vote)",
        "test accuracy (%), mean over runs ± its standard error",
    )
    markdown = f"\n## Across seeds\n\n{markdown_table(ACROSS_SEEDS, rows)}\n{ACROSS_SEEDS_LEGEND}\n"
    return markdown, [save_figure(figure, out / "accuracy_across_seeds.png")]
