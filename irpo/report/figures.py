"""The report's figures, as plain matplotlib `Figure`s (no pyplot, no global backend): accuracy per iteration,
chosen and rejected log-probs over training (the paper's Figures 2-4), and the alpha x beta grid."""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib.ticker
from matplotlib.figure import Figure

from irpo.files import read_log, write_text
from irpo.report.discover import Run, is_reference, reference_run
from irpo.results import collect_rows
from irpo.rundir import RunDir, budget_train_log
from irpo.stats import format_accuracy


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
