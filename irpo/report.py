"""`python -m irpo.report <run or sweep dir>`: the paper's tables and figures, rebuilt from run directories.

Reads only what the runs wrote (config.yaml, iter_t/metrics.json, train_log.jsonl, pairs_stats.json);
nothing is recomputed. Writes, into the directory given:
  report.md / report.csv    one row per method and iteration (the layout of Tables 1 and 2); "train steps
                            kept" is the checkpoint-selected step when trainer.eval_every > 0
  accuracy.png              test accuracy per iteration for each method
  logprobs_*.png            chosen and rejected log-probs over training steps (Figures 2-4)
  alpha_beta.png            for runs of one method that differ in loss.alpha and loss.beta (the paper's
                            ablation): final greedy test accuracy on an alpha x beta grid
  pairs.txt                 pair statistics per iteration
"""

from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import matplotlib.ticker  # noqa: E402
from hydra.experimental.callback import Callback  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from irpo.results import cell, collect_rows  # noqa: E402
from irpo.rundir import RunDir, read_json  # noqa: E402

LABELS = {
    "zero_shot": "Zero-shot CoT",
    "sft_gold": "SFT on gold CoT",
    "sft_self_correct": "SFT on own correct samples (not in the paper)",
    "star": "STaR (SFT on chosen of D0, 1 iteration)",
    "star_2x": "STaR, twice the data",
    "dpo": "DPO on D0, from M0",
    "dpo_from_star": "DPO on D0, from SFT on chosen",
    "irpo": "Iterative RPO",
    "irpo_from_star": "Iterative RPO, from SFT on chosen",
    "irpo_2x": "Iterative RPO, twice the data (1 iteration)",
}
# Table order: baselines first, then the method, as in the paper.
ORDER = list(LABELS)


@dataclass
class Run:
    path: Path
    name: str  # what distinguishes it in a sweep: the dir name
    method: str
    config: dict

    @property
    def label(self) -> str:
        base = LABELS.get(self.method, self.method)
        return base if self.name in (self.method, "") or self.name.startswith(f"{self.method}-") else \
            f"{base} [{self.name}]"


def find_runs(root: Path) -> list[Run]:
    """Every run directory at or below `root` (a run is a dir with config.yaml and iter_0/)."""
    runs = []
    for config_path in sorted(root.rglob("config.yaml")):
        path = config_path.parent
        if path.name == ".hydra" or not (path / "iter_0").is_dir():
            continue
        config = OmegaConf.to_container(OmegaConf.load(config_path))
        runs.append(Run(path, path.name, config.get("method", "irpo"), config))
    return sorted(runs, key=lambda r: (ORDER.index(r.method) if r.method in ORDER else len(ORDER), r.name))


def table_rows(runs: list[Run]) -> list[dict]:
    """One row per method and iteration. In a sweep every run evaluates the model it starts from as
    iteration 0; M0 is shown once (the zero-shot row, or a seed-model row), starting points taken from
    another run (init_from) not at all."""
    rows = []
    m0_shown = len(runs) > 1 and any(run.method == "zero_shot" for run in runs)
    for run in runs:
        for row in collect_rows(RunDir(run.path)):
            label = run.label
            if row["iteration"] == 0 and len(runs) > 1 and run.method != "zero_shot":
                if m0_shown or run.config.get("init_from") is not None:
                    continue
                m0_shown, label = True, "Seed model M0"
            rows.append({"method": label, "run": run.name, **row,
                         "alpha": run.config.get("loss", {}).get("alpha"),
                         "beta": run.config.get("loss", {}).get("beta")})
    return rows


TABLE = [("method", "Method"), ("iteration", "Iteration"), ("greedy_accuracy", "Test acc, greedy"),
         ("majority_accuracy", "Test acc, maj@k"), ("majority_k", "k"), ("pairs", "Pairs"),
         ("selected_step", "Train steps kept")]


def write_table(rows: list[dict], out: Path) -> str:
    markdown = "| " + " | ".join(h for _, h in TABLE) + " |\n|" + "---|" * len(TABLE) + "\n"
    markdown += "".join("| " + " | ".join(cell(r.get(k)) for k, _ in TABLE) + " |\n" for r in rows)
    (out / "report.md").write_text(markdown)
    with (out / "report.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["method"])
        writer.writeheader()
        writer.writerows(rows)
    return markdown


def plot_accuracy(runs: list[Run], out: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        its = [it for it in RunDir(run.path).iterations() if it.metrics.exists()]
        xs = [it.t for it in its]
        greedy = [100 * (read_json(it.metrics)["eval"]["greedy_accuracy"] or 0) for it in its]
        line, = ax.plot(xs, greedy, marker="o", label=run.label)
        majority = [read_json(it.metrics)["eval"].get("majority_accuracy") for it in its]
        if any(v is not None for v in majority):
            ax.plot(xs, [100 * (v or 0) for v in majority], marker="x", linestyle="--", color=line.get_color(),
                    alpha=0.6)
    ax.set_xlabel("iteration (0 = the model the method starts from)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Test accuracy per iteration (solid: greedy, dashed: majority vote)", fontsize=10)
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    path = out / "accuracy.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _train_log(run: Run, t: int = 1) -> list[dict]:
    path = run.path / f"iter_{t}" / "model" / "train_log.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_logprobs(runs: list[Run], out: Path) -> list[Path]:
    """Chosen (solid) and rejected (dashed) sequence log-probs over iteration 1's training steps."""
    with_logs = {run.method: run for run in runs if "rejected_logps" in (_train_log(run)[:1] or [{}])[0]}
    comparisons = [("star", "irpo", "SFT on chosen vs DPO+NLL (Figure 2)"), ("dpo", "irpo", "DPO vs DPO+NLL (Figure 3)")]
    made = []
    for left, right, title in comparisons:
        if left in with_logs and right in with_logs:
            made.append(_logprob_figure([with_logs[left], with_logs[right]], title,
                                        out / f"logprobs_{left}_vs_{right}.png"))
    if not made and with_logs:
        made.append(_logprob_figure(list(with_logs.values()), "chosen vs rejected log-probs", out / "logprobs.png"))
    return made


def _smooth(values: list[float]) -> list[float]:
    window = max(1, len(values) // 15)
    return [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
            for i in range(len(values))]


def _logprob_figure(runs: list[Run], title: str, path: Path) -> Path:
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for run in runs:
        log = _train_log(run)
        steps = [e["step"] for e in log]
        chosen, rejected = [e["chosen_logps"] for e in log], [e["rejected_logps"] for e in log]
        # Per-batch values are noisy: draw them faintly, and a moving average on top.
        line, = ax.plot(steps, _smooth(chosen), label=f"{run.label}: chosen")
        ax.plot(steps, _smooth(rejected), linestyle="--", color=line.get_color(), label=f"{run.label}: rejected")
        ax.plot(steps, chosen, color=line.get_color(), alpha=0.2, linewidth=0.8)
        ax.plot(steps, rejected, color=line.get_color(), alpha=0.2, linewidth=0.8, linestyle="--")
    ax.set_xlabel("training step (iteration 1)")
    ax.set_ylabel("sequence log-probability (batch mean; faint: per step)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_alpha_beta(runs: list[Run], root: Path) -> list[Path]:
    """A heatmap of the last iteration's greedy accuracy over (alpha, beta), when the runs sweep them."""
    finals, start = {}, None
    for run in runs:
        rows = collect_rows(RunDir(run.path))
        if run.method == "irpo" and len(rows) > 1:
            loss = run.config.get("loss", {})
            finals[(float(loss.get("alpha")), float(loss.get("beta")))] = rows[-1]["greedy_accuracy"]
            start = rows[0]["greedy_accuracy"]
    alphas, betas = sorted({a for a, _ in finals}), sorted({b for _, b in finals})
    if len(alphas) < 2 and len(betas) < 2:
        return []
    grid = [[finals.get((a, b), float("nan")) for b in betas] for a in alphas]
    fig, ax = plt.subplots(figsize=(1.4 * len(betas) + 2.5, 1.0 * len(alphas) + 1.8))
    image = ax.imshow([[100 * v for v in row] for row in grid], cmap="viridis", origin="lower", aspect="auto")
    ax.set_xticks(range(len(betas)), [f"{b:g}" for b in betas])
    ax.set_yticks(range(len(alphas)), [f"{a:g}" for a in alphas])
    ax.set_xlabel("β (DPO temperature)")
    ax.set_ylabel("α (NLL weight)")
    ax.set_title(f"greedy test accuracy after the last iteration (%); M0: {100 * start:.1f}%", fontsize=10)
    for i, row in enumerate(grid):
        for j, value in enumerate(row):
            if value == value:  # not NaN: that (alpha, beta) ran
                dark = image.norm(100 * value) < 0.6  # white text on the dark end of the colour map
                ax.text(j, i, f"{100 * value:.1f}", ha="center", va="center", color="white" if dark else "black",
                        fontsize=9)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    path = root / "alpha_beta.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return [path]


def pair_summary(runs: list[Run]) -> str:
    lines = []
    for run in runs:
        for it in RunDir(run.path).iterations():
            if not it.pairs_stats.exists():
                continue
            s = read_json(it.pairs_stats)
            lines.append(f"{run.label}, iteration {it.t}: {s['pairs_kept']} pairs kept of {s['pairs_made']} made from "
                         f"{s['questions']} questions; skipped {s['skipped_no_winner']} with no winner, "
                         f"{s['skipped_no_loser']} with no loser, {s['skipped_no_gold']} with no gold; "
                         f"{s['dropped_too_long']} dropped as too long; mean chosen {s.get('mean_chosen_chars', '-')} "
                         f"chars, rejected {s.get('mean_rejected_chars', '-')} chars")
    return "\n".join(lines) + "\n"


def build_report(root: str | Path, quiet: bool = False) -> dict:
    root = Path(root)
    runs = find_runs(root)
    if not runs:
        raise FileNotFoundError(f"no run directories (config.yaml + iter_0/) at or below {root}")
    rows = table_rows(runs)
    markdown = write_table(rows, root)
    figures = [plot_accuracy(runs, root)] + plot_logprobs(runs, root) + plot_alpha_beta(runs, root)
    (root / "pairs.txt").write_text(pair_summary(runs))
    if not quiet:
        print(markdown)
        print("figures:", ", ".join(str(f) for f in figures))
    return {"rows": rows, "figures": figures}


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
