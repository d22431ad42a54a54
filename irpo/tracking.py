"""Dashboards (`logger=none|wandb`): the run directory, mirrored to a tracker as it is written.

The run directory stays the record; a tracker reads what the stages wrote: training steps from
train_log.jsonl while training runs (`watch_training`, polled), and each iteration's metrics.json
and eval.jsonl once it is finished. So every trainer logs the same way, the DeepSpeed ranks never
touch the tracker (only the loop's process, rank 0, logs), and a resumed run, or one that turns the
logger on later, logs exactly the iterations its dashboard has not seen yet.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from irpo.files import iter_jsonl, read_json, read_log, write_json
from irpo.protocols import Tracker
from irpo.registry import Registry
from irpo.rundir import IterationDir, RunDir
from irpo.training.workdir import TRAIN_LOG

TRACKERS: Registry[type] = Registry("logger")

# Config keys whose values never leave this machine, whatever a user interpolated into them.
SECRET_KEY = re.compile(r"api[_-]?key|token|secret|password", re.IGNORECASE)


def redact(config: Any) -> Any:
    if isinstance(config, dict):
        return {k: "<redacted>" if SECRET_KEY.search(str(k)) else redact(v) for k, v in config.items()}
    if isinstance(config, list):
        return [redact(v) for v in config]
    return config


class BaseTracker:
    """The `irpo.protocols.Tracker` defaults: used as `with build_tracker(cfg, run_dir) as tracker:`, so the
    dashboard is closed on any exit; no live view of training unless a tracker has one."""

    def watch_training(self, it: IterationDir, train_log: Path) -> contextlib.AbstractContextManager[Any]:
        return contextlib.nullcontext()

    def log_iteration(self, it: IterationDir) -> None:
        pass

    def finish(self) -> None:
        pass

    def __enter__(self) -> BaseTracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()


@TRACKERS.register("none")
class NoTracker(BaseTracker):
    def __init__(self, cfg: DictConfig, run_dir: RunDir):
        pass


@TRACKERS.register("wandb")
class WandbTracker(BaseTracker):
    """One W&B run per run directory (so per Hydra job), grouped by sweep; resumed with the run dir."""

    poll_seconds = 10.0

    @staticmethod
    def check(cfg: DictConfig) -> None:
        if cfg.logger.mode not in ("online", "offline", "disabled"):
            raise ValueError(f"unknown logger.mode '{cfg.logger.mode}'; valid choices: disabled, offline, online")
        if cfg.logger.mode != "disabled" and importlib.util.find_spec("wandb") is None:
            raise ValueError("wandb is not installed: pip install -e '.[wandb]'")

    def __init__(self, cfg: DictConfig, run_dir: RunDir):
        import wandb

        self.wandb = wandb
        self.cfg = cfg
        self.lock = threading.Lock()
        self.train_rows_logged: dict[int, int] = {}  # per iteration, in this process
        self.state_path = run_dir.root / "wandb_state.json"  # run id and iterations already logged
        self.state = read_json(self.state_path) if self.state_path.exists() else {"logged_iterations": []}
        settings = cfg.logger
        self.run = wandb.init(
            project=settings.project,
            entity=settings.entity,
            group=settings.group or _default_group(cfg),
            name=run_dir.root.name,
            job_type=cfg.method,
            tags=[*settings.tags, cfg.task.name, cfg.method],
            config=redact(OmegaConf.to_container(cfg, resolve=True)),
            dir=str(run_dir.root),
            mode=settings.mode,
            id=self.state.get("id"),
            resume="allow",
        )
        self.state["id"] = self.run.id
        write_json(self.state_path, self.state)
        self.run.define_metric("train/global_step")
        self.run.define_metric("train/*", step_metric="train/global_step")
        self.run.define_metric("iteration")
        for prefix in ("eval", "rewards", "pairs", "generation", "iteration_train"):
            self.run.define_metric(f"{prefix}/*", step_metric="iteration")

    @contextlib.contextmanager
    def watch_training(self, it: IterationDir, train_log: Path) -> Iterator[None]:
        stop = threading.Event()
        started = time.time()

        def poll_once() -> None:
            try:
                if train_log.stat().st_mtime < started:  # left by a killed attempt; the trainer replaces it
                    return
            except FileNotFoundError:
                return
            self._log_train_rows(it, train_log)

        def poll() -> None:
            while not stop.wait(self.poll_seconds):
                poll_once()

        thread = threading.Thread(target=poll, name="irpo-wandb-train-log", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            poll_once()  # steps written since the last poll, if the log is still there

    def _log_train_rows(self, it: IterationDir, path: Path) -> int:
        """Logs the rows of `path` not logged yet (steps count on from the previous iteration's last);
        returns the file's last step."""
        with self.lock:
            rows = read_log(path)  # [] when not started yet, or just renamed into place
            base = self.state.get("global_step", 0)
            for row in rows[self.train_rows_logged.get(it.t, 0) :]:
                self.run.log(
                    {
                        "train/global_step": base + row["step"],
                        "train/iteration": it.t,
                        **{f"train/{k}": v for k, v in row.items() if k != "step" and v is not None},
                    }
                )
            self.train_rows_logged[it.t] = max(len(rows), self.train_rows_logged.get(it.t, 0))
            return rows[-1]["step"] if rows else 0

    def log_iteration(self, it: IterationDir) -> None:
        if it.t in self.state["logged_iterations"] or not it.metrics.exists():
            return
        metrics = read_json(it.metrics)
        train_log = it.model / TRAIN_LOG
        if train_log.exists():
            last_step = self._log_train_rows(it, train_log)  # whatever the live watch has not sent yet
            self.state["global_step"] = self.state.get("global_step", 0) + last_step
        summary: dict[str, Any] = {"iteration": it.t}
        summary.update(_numbers("eval", metrics.get("eval", {})))
        summary.update(_numbers("rewards", metrics.get("rewards", {})))
        summary.update(_numbers("pairs", metrics.get("pairs", {})))
        summary.update(_numbers("iteration_train", metrics.get("train", {})))
        generation_stats = it.path / "generation_stats.json"
        if generation_stats.exists():
            summary.update(_numbers("generation", read_json(generation_stats)))
        summary["eval/samples"] = self._sample_table(it)
        self.run.log(summary)
        self.state["logged_iterations"].append(it.t)
        write_json(self.state_path, self.state)

    def _sample_table(self, it: IterationDir):
        """A few test questions with M_t's greedy output: what the numbers above look like."""
        columns = ["iteration", "id", "gold", "answer", "correct", "output"]
        rows: list[list[Any]] = []
        if it.eval_predictions.exists():
            for row in iter_jsonl(it.eval_predictions):
                if len(rows) == self.cfg.logger.sample_generations:
                    break
                rows.append(
                    [it.t, row["id"], str(row["gold"]), str(row["greedy_answer"]), row["greedy_correct"], row["greedy"]]
                )
        return self.wandb.Table(columns=list[str | int](columns), data=rows)

    def finish(self) -> None:
        self.run.finish()


def build_tracker(cfg: DictConfig, run_dir: RunDir) -> Tracker:
    return TRACKERS.get(cfg.logger.name)(cfg, run_dir)


def _numbers(prefix: str, values: dict) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in values.items() if isinstance(v, (int, float)) and not isinstance(v, bool)}


def _default_group(cfg: DictConfig) -> str:
    """A multirun's jobs share their sweep directory's name; a single run is grouped by method."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hydra_cfg = HydraConfig.get()
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return Path(hydra_cfg.sweep.dir).name
    except ValueError:  # not under Hydra (e.g. run() called from Python)
        pass
    return cfg.experiment or cfg.method
