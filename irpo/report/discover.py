"""Finding the runs under a directory, and which of them the others are compared with."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from omegaconf import OmegaConf

from irpo.config import read_resolved
from irpo.rundir import RunDir


@dataclass
class Run:
    path: Path
    name: str  # what distinguishes it in a sweep: the dir name
    method: str
    config: dict
    resolved: dict  # its resolved.json: each `auto` as its machine resolved it ({} for older runs)

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
        runs.append(Run(path, path.name, config.get("method", "irpo"), config, read_resolved(path)))
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


def finished(run: Run) -> list:
    return [it for it in RunDir(run.path).iterations() if it.metrics.exists()]
