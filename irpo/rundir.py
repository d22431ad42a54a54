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

Every file is written under a temporary name and renamed into place, so a file that exists is
complete and a killed run resumes at the first missing artifact (a sampling stage: at its first missing
shard).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text(path: Path, content: str | bytes) -> None:
    """Writes under a temporary name and renames into place, so a reader never sees half a file."""
    with replacing(path) as tmp:
        tmp.write_bytes(content if isinstance(content, bytes) else content.encode())


@contextlib.contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """Yields a temporary path to write `path` at; renamed into place only once the write is whole.

    A failed write (a full disk: OSError ENOSPC) removes the temporary file and raises naming `path`, whose
    previous content, if any, is unchanged."""
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException as e:
        tmp.unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise OSError(
                e.errno, f"writing {path} failed ({e.strerror or e}); its previous content, if any, is unchanged"
            ) from e
        raise


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> int:
    count = 0
    with replacing(path) as tmp, tmp.open("w") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            count += 1
    return count


def read_jsonl(path: Path, fix: str | None = None) -> list[dict[str, Any]]:
    return list(iter_jsonl(path, fix))


def iter_jsonl(path: Path, fix: str | None = None) -> Iterator[dict[str, Any]]:
    """The rows of a JSONL file; a line that does not parse fails naming the file, the line and `fix`
    (what to delete to recover, for a stage's artifact)."""
    with Path(path).open() as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                yield json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"{path}: line {line_number} is not valid JSON ({e.msg}; cut off?)" + (f"; {fix}" if fix else "")
                ) from None


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


def publish_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Atomically move a fully written directory into place."""
    if final_dir.exists():
        shutil.rmtree(final_dir)
    os.replace(tmp_dir, final_dir)


def budget_train_log(iteration_path: Path) -> Path:
    """iter_t's log of training over the whole step budget: the selection run's when the model was then
    retrained for the selected steps (its own log covers only those), else the model's."""
    selection = Path(iteration_path) / "model_selection" / "train_log.jsonl"
    return selection if selection.exists() else Path(iteration_path) / "model" / "train_log.jsonl"


class RunDir:
    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

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
        self.path = path
        self.t = t
        path.mkdir(parents=True, exist_ok=True)

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
