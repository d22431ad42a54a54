"""`python -m irpo.report <run or sweep dir>`: the paper's tables and figures, rebuilt from run directories.

Reads only what the runs wrote (config.yaml, iter_t/metrics.json, train_log.jsonl, pairs_stats.json);
nothing is recomputed but the statistics (irpo.stats). Writes, into the directory given:
  report.md / report.csv    one row per method and iteration (the layout of Tables 1 and 2); "train steps
                            kept" is the checkpoint-selected step when trainer.eval_every > 0. Each accuracy
                            has its standard error (CSV: *_se), and each row is compared with the reference
                            IRPO run at the same iteration on the same test questions (exact McNemar test;
                            CSV: *_vs_irpo_points/_b/_c/_p/_n). report.md ends with the paired tests behind
                            the paper's orderings (also in paired_tests.csv): each method's last row against
                            IRPO's last iteration, and each IRPO iteration against the one before and M0
  accuracy.png              test accuracy per iteration for each method, with standard-error bars
  logprobs_*.png            chosen and rejected log-probs over training steps (Figures 2-4)
  alpha_beta.png            for runs of one method that differ in loss.alpha and loss.beta (the paper's
                            ablation): final greedy test accuracy on an alpha x beta grid
  pairs.txt                 pair statistics per iteration
  seeds.csv, accuracy_across_seeds.png
                            where runs differ only in their seed (irpo.config.experiment_key): per experiment
                            and iteration, each accuracy's mean over the runs and its standard error across
                            them, and the mean gain over each run's M0 (also a section of report.md)
"""

from __future__ import annotations

import csv
import io
import sys
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import matplotlib.ticker
from hydra.experimental.callback import Callback
from matplotlib.figure import Figure
from omegaconf import OmegaConf

from irpo.config import changed_keys, experiment_identity, experiment_key
from irpo.files import read_json, read_log, write_text
from irpo.results import (
    PAIRED_LEGEND,
    collect_rows,
    finished_iteration,
    markdown_table,
    paired_fields,
)
from irpo.rundir import RunDir, budget_train_log
from irpo.stats import compare_iterations, format_accuracy, mean_and_se


@dataclass
class Run:
    path: Path
    name: str  # what distinguishes it in a sweep: the dir name
    method: str
    config: dict

    @property
    def label(self) -> str:
        """The method's label (conf/method/*.yaml; runs made before labels were recorded: its name), and the
        run's dir name where that tells runs of one method apart (a sweep over loss.alpha, say)."""
        base = self.config.get("label") or self.method
        return (
            base
            if self.name in (self.method, "") or self.name.startswith(f"{self.method}-")
            else f"{base} [{self.name}]"
        )


def find_runs(root: Path) -> list[Run]:
    """Every run directory at or below `root` (a run is a dir with config.yaml and iter_0/)."""
    runs = []
    for config_path in sorted(root.rglob("config.yaml")):
        path = config_path.parent
        if path.name == ".hydra" or not (path / "iter_0").is_dir():
            continue
        config = OmegaConf.to_container(OmegaConf.load(config_path))
        if not isinstance(config, dict):
            raise ValueError(f"{config_path}: a run's config.yaml holds a mapping, this one does not")
        runs.append(Run(path, path.name, config.get("method", "irpo"), config))
    return sorted(runs, key=lambda r: (r.config.get("report_order", 0), r.name))


def is_reference(run: Run) -> bool:
    """A run of the method the others are compared with (`report_reference` in conf/method/*.yaml)."""
    return bool(run.config.get("report_reference"))


def reference_run(runs: list[Run]) -> Run | None:
    """The run every row is tested against: the only reference-method run, or among several the one whose
    directory is named after its method (a preset's; an alpha/beta sweep has many and no reference)."""
    references = [run for run in runs if is_reference(run)]
    named = [run for run in references if run.name == run.method]
    return references[0] if len(references) == 1 else named[0] if len(named) == 1 else None


def evaluates_only(run: Run) -> bool:
    """A run that only evaluates the model it starts from (zero-shot CoT): its iteration 0 is its row."""
    return run.config.get("iterations") == 0


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


def finished(run: Run) -> list:
    return [it for it in RunDir(run.path).iterations() if it.metrics.exists()]


def paired_tests(runs: list[Run], reference: Run | None) -> list[dict]:
    """The comparisons behind the paper's orderings: every other run's last iteration against IRPO's last,
    each IRPO iteration against the one before, and IRPO's last against its M0."""
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
    return [
        {"row": label, "against": against, **paired_fields("paired", compare_iterations(it, ref))}
        for label, it, against, ref in pairs
    ]


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


def repeat_groups(runs: list[Run]) -> list[list[Run]]:
    """Runs that repeat one experiment with other seeds (irpo.config.experiment_key), two or more a group."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        groups.setdefault(experiment_key(run.config), []).append(run)
    return [group for group in groups.values() if len(group) > 1]


def group_labels(groups: list[list[Run]]) -> list[str]:
    """Each group's method label, with the settings that tell it from the other groups of the same method
    (still alike, as for runs recorded before a key existed: numbered)."""
    identities = [experiment_identity(group[0].config) for group in groups]
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


def save_figure(fig: Figure, path: Path) -> Path:
    """Figures here are plain `Figure`s, not pyplot's: no global backend to pick, no figure manager to close."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    write_text(path, buffer.getvalue())
    return path


def accuracy_figure(runs: list[Run]):
    """Greedy (solid) and majority-vote (dashed) test accuracy per iteration, each point with ±1 standard error."""
    return series_figure(
        [(run.label, collect_rows(RunDir(run.path))) for run in runs],
        "Test accuracy per iteration (solid: greedy, dashed: majority vote)",
        "test accuracy (%), bars: ±1 standard error",
    )


def series_figure(series: list[tuple[str, list[dict]]], title: str, ylabel: str):
    """One line per (label, rows); rows as `collect_rows` gives them: accuracies and their standard errors."""
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for i, (label, rows) in enumerate(series):
        dodge = 0.04 * (i - (len(series) - 1) / 2)  # lines side by side at each iteration, so bars do not overlap
        greedy = [r for r in rows if r["greedy_accuracy"] is not None]
        bars = ax.errorbar(
            [r["iteration"] + dodge for r in greedy],
            [100 * r["greedy_accuracy"] for r in greedy],
            yerr=[100 * (r["greedy_se"] or 0) for r in greedy],
            marker="o",
            capsize=3,
            label=label,
        )
        majority = [r for r in rows if r["majority_accuracy"] is not None]
        if majority:
            ax.errorbar(
                [r["iteration"] + dodge for r in majority],
                [100 * r["majority_accuracy"] for r in majority],
                yerr=[100 * (r["majority_se"] or 0) for r in majority],
                marker="x",
                linestyle="--",
                capsize=3,
                color=bars.lines[0].get_color(),
                alpha=0.6,
            )
    ax.set_xlabel("iteration (0 = the model the method starts from)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def plot_accuracy(runs: list[Run], out: Path) -> Path:
    return save_figure(accuracy_figure(runs), out / "accuracy.png")


def _train_log(run: Run, t: int = 1) -> list[dict]:
    return read_log(budget_train_log(run.path / f"iter_{t}"))


def plot_logprobs(runs: list[Run], out: Path) -> list[Path]:
    """Chosen (solid) and rejected (dashed) sequence log-probs over iteration 1's training steps."""
    with_logs = [run for run in runs if "rejected_logps" in (_train_log(run)[:1] or [{}])[0]]
    reference = reference_run(with_logs)
    made = []
    for run in with_logs:
        title = run.config.get("logprob_figure")
        if title and reference is not None and run is not reference:
            path = out / f"logprobs_{run.method}_vs_{reference.method}.png"
            made.append(_logprob_figure([run, reference], title, path))
    if not made and with_logs:
        made.append(_logprob_figure(with_logs, "chosen vs rejected log-probs", out / "logprobs.png"))
    return made


def _smooth(values: list[float]) -> list[float]:
    window = max(1, len(values) // 15)
    return [
        sum(values[max(0, i - window + 1) : i + 1]) / len(values[max(0, i - window + 1) : i + 1])
        for i in range(len(values))
    ]


def _logprob_figure(runs: list[Run], title: str, path: Path) -> Path:
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    for run in runs:
        log = _train_log(run)
        steps = [e["step"] for e in log]
        chosen, rejected = [e["chosen_logps"] for e in log], [e["rejected_logps"] for e in log]
        # Per-batch values are noisy: draw them faintly, and a moving average on top.
        (line,) = ax.plot(steps, _smooth(chosen), label=f"{run.label}: chosen")
        ax.plot(steps, _smooth(rejected), linestyle="--", color=line.get_color(), label=f"{run.label}: rejected")
        ax.plot(steps, chosen, color=line.get_color(), alpha=0.2, linewidth=0.8)
        ax.plot(steps, rejected, color=line.get_color(), alpha=0.2, linewidth=0.8, linestyle="--")
    ax.set_xlabel("training step (iteration 1)")
    ax.set_ylabel("sequence log-probability (batch mean; faint: per step)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_alpha_beta(runs: list[Run], root: Path) -> list[Path]:
    fig = alpha_beta_figure(runs)
    return [save_figure(fig, root / "alpha_beta.png")] if fig else []


def alpha_beta_figure(runs: list[Run]):
    """A heatmap of the last iteration's greedy accuracy (± one standard error in each cell) over (alpha, beta),
    when the runs sweep them; None when they do not."""
    finals, start, errors = {}, None, {}
    for run in runs:
        rows = collect_rows(RunDir(run.path))
        if is_reference(run) and len(rows) > 1:
            key = (float(run.config.get("loss", {}).get("alpha")), float(run.config.get("loss", {}).get("beta")))
            finals[key], errors[key] = rows[-1]["greedy_accuracy"], rows[-1]["greedy_se"]
            start = rows[0]
    alphas, betas = sorted({a for a, _ in finals}), sorted({b for _, b in finals})
    if start is None or (len(alphas) < 2 and len(betas) < 2):
        return None
    grid = [[finals.get((a, b), float("nan")) for b in betas] for a in alphas]
    fig = Figure(figsize=(1.4 * len(betas) + 2.5, 1.0 * len(alphas) + 1.8))
    ax = fig.subplots()
    image = ax.imshow([[100 * v for v in row] for row in grid], cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_xlabel("β (DPO temperature)")
    ax.set_ylabel("α (NLL weight)")
    ax.set_title(
        f"greedy test accuracy after the last iteration\n(% ± one standard error; "
        f"M0: {format_accuracy(start['greedy_accuracy'], start['greedy_se'])})",
        fontsize=10,
    )
    for i, (alpha, row) in enumerate(zip(alphas, grid, strict=True)):
        for j, (beta, value) in enumerate(zip(betas, row, strict=True)):
            if value == value:  # not NaN: that (alpha, beta) ran
                dark = float(image.norm(100 * value)) < 0.6  # type: ignore[arg-type]  # white text on the dark end of the colour map
                se = errors[(alpha, beta)]
                ax.text(
                    j,
                    i,
                    f"{100 * value:.1f}" + ("" if se is None else f"\n±{100 * se:.1f}"),
                    ha="center",
                    va="center",
                    color="white" if dark else "black",
                    fontsize=9,
                )
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    return fig


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


def build_report(root: str | Path, quiet: bool = False) -> dict:
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run directories (config.yaml + iter_0/) at or below {root}")
    reference = reference_run(runs)
    rows, tests, seeds = table_rows(runs), paired_tests(runs, reference), across_seeds(repeat_groups(runs))
    markdown = write_table(rows, tests, reference, root)
    seeds_markdown, seeds_figures = write_across_seeds(seeds, root)
    if seeds_markdown:
        markdown += seeds_markdown
        write_text(root / "report.md", markdown)
    figures = [plot_accuracy(runs, root), *plot_logprobs(runs, root), *plot_alpha_beta(runs, root), *seeds_figures]
    write_text(root / "pairs.txt", pair_summary(runs))
    if not quiet:
        print(markdown)
        print("figures:", ", ".join(str(f) for f in figures))
    return {"rows": rows, "paired_tests": tests, "across_seeds": seeds, "figures": figures}


class ReportCallback(Callback):
    """Builds the report in the sweep directory when a multirun ends."""

    def on_multirun_end(self, config, **kwargs) -> None:
        try:
            build_report(config.hydra.sweep.dir)
        except FileNotFoundError as e:
            print(f"irpo.report: {e}", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m irpo.report <run or sweep dir>")
    build_report(sys.argv[1])
