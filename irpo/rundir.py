"""The run directory is the record: every stage reads its inputs from it and writes its outputs to it.

Layout::

    <run>/config.yaml                 resolved config
    <run>/iter_0/metrics.json         evaluation of the seed model M0
    <run>/iter_t/generations.jsonl    N samples per training prompt from M_{t-1}
    <run>/iter_t/generations.shards/  while sampling runs: its rows, a file per shard of prompts (irpo.shards)
    <run>/iter_t/rewards.jsonl        extracted answer and 0/1 reward per sample
    <run>/iter_t/pairs.jsonl          (prompt, chosen, rejected) training pairs
    <run>/iter_t/pairs_stats.json     pairs made, prompts skipped and why
    <run>/iter_t/model/               M_t (save_pretrained, safetensors) + train_log.jsonl
    <run>/iter_t/eval.jsonl, eval.json  test predictions and accuracies of M_t
    <run>/iter_t/metrics.json         everything above summarised
    <run>/results.md, results.json    the Table-1-shaped summary

Every file is written whole or not at all (irpo.files), so a file that exists is complete and a killed
run resumes at the first missing artifact (a sampling stage: at its first missing shard).

`RunDir` and `IterationDir` only name paths: reading a run (the report, `pairs.from_run`, `init_from`) leaves
it as it was. The loop, which writes, makes the folders (`create`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def check_rows_match(path: Path, rows: list[dict[str, Any]], ids: list[str], fix: str) -> list[dict[str, Any]]:
    """`rows` (read from `path`) are one per id of `ids`, in that order; else an error naming the file and `fix`."""
    if len(rows) != len(ids):
        raise ValueError(
            f"{path}: {len(rows)} rows where {len(ids)} were expected (cut short, or written for other prompts?); {fix}"
        )
    for line_number, (row, expected) in enumerate(zip(rows, ids, strict=True), start=1):
        found = row.get("id") if isinstance(row, dict) else None
        if found != expected:
            raise ValueError(
                f"{path}: line {line_number} is for id {found!r} where {expected!r} was expected "
                f"(written for other prompts?); {fix}"
            )
    return rows


def budget_train_log(iteration_path: Path) -> Path:
    """iter_t's log of training over the whole step budget: the selection run's when the model was then
    retrained for the selected steps (its own log covers only those), else the model's."""
    selection = Path(iteration_path) / "model_selection" / "train_log.jsonl"
    return selection if selection.exists() else Path(iteration_path) / "model" / "train_log.jsonl"


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)

    def create(self) -> RunDir:
        """Makes the run's folder, for a run about to write into it."""
        self.root.mkdir(parents=True, exist_ok=True)
        return self

    def iteration(self, t: int) -> IterationDir:
        return IterationDir(self.root / f"iter_{t}", t)

    def iterations(self) -> list[IterationDir]:
        found = [IterationDir(p, int(p.name.split("_")[1])) for p in self.root.glob("iter_*") if p.is_dir()]
        return sorted(found, key=lambda it: it.t)

    @property
    def config(self) -> Path:
        return self.root / "config.yaml"


class IterationDir:
    def __init__(self, path: Path, t: int):
        self.path = Path(path)
        self.t = t

    def create(self) -> IterationDir:
        """Makes iter_t's folder, for an iteration about to write into it."""
        self.path.mkdir(parents=True, exist_ok=True)
        return self

    @property
    def generations(self) -> Path:
        return self.path / "generations.jsonl"

    @property
    def rewards(self) -> Path:
        return self.path / "rewards.jsonl"

    @property
    def pairs(self) -> Path:
        return self.path / "pairs.jsonl"

    @property
    def pairs_stats(self) -> Path:
        return self.path / "pairs_stats.json"

    @property
    def model(self) -> Path:
        return self.path / "model"

    @property
    def eval_predictions(self) -> Path:
        return self.path / "eval.jsonl"

    @property
    def eval_metrics(self) -> Path:
        return self.path / "eval.json"

    @property
    def metrics(self) -> Path:
        return self.path / "metrics.json"

    def has_model(self) -> bool:
        return (self.model / "config.json").exists() and (self.model / "train_summary.json").exists()
