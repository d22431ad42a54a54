"""Step 4 of Figure 1: train M_t from M_{t-1} on the iteration's pairs (M_{t-1} is the reference).

With checkpoint selection (a scorer, given when trainer.eval_every > 0) the held-out score picks the step;
with trainer.retrain_with_heldout the iteration then retrains from M_{t-1} on the train and held-out
pairs together for the selected number of steps (paper, Section 3.1).
"""

from __future__ import annotations

import logging
from pathlib import Path

from irpo.files import read_json, write_json
from irpo.protocols import Scorer, Trainer
from irpo.rundir import IterationDir
from irpo.training.workdir import live_train_log

log = logging.getLogger(__name__)


def train(
    it: IterationDir,
    model_dir,
    pairs: list[dict],
    trainer: Trainer,
    loss_cfg,
    seed: int,
    scorer: Scorer | None = None,
    retrain_with_heldout: bool = False,
) -> str:
    if it.has_model():
        log.info("iter %d: model exists, skipping training", it.t)
        return str(it.model)
    skipped = it.path / "train_skipped.json"
    if skipped.exists():
        return read_json(skipped)["model"]
    train_rows = [p for p in pairs if p.get("split", "train") == "train"]
    if not train_rows:  # e.g. STaR from a model with no correct sample: record it, keep the sweep going
        log.warning("iter %d: no training pairs (see pairs_stats.json); M_%d is M_%d unchanged", it.t, it.t, it.t - 1)
        write_json(skipped, {"model": str(model_dir), "reason": "no training pairs"})
        return str(model_dir)
    log.info(
        "iter %d: training on %d rows with loss=%s (alpha=%s, beta=%s) from %s",
        it.t,
        len(train_rows),
        loss_cfg.name,
        loss_cfg.alpha,
        loss_cfg.beta,
        model_dir,
    )
    if not retrain_with_heldout:
        trainer.train(model_dir, train_rows, it.model, loss_cfg, seed=seed, desc=f"iter {it.t} train", scorer=scorer)
        return str(it.model)
    selection_dir = it.path / "model_selection"
    if not (selection_dir / "train_summary.json").exists():
        trainer.train(
            model_dir, train_rows, selection_dir, loss_cfg, seed=seed, desc=f"iter {it.t} select", scorer=scorer
        )
    steps = read_json(selection_dir / "train_summary.json")["selected_step"]
    log.info(
        "iter %d: retraining on train + held-out pairs (%d rows) for the selected %d steps", it.t, len(pairs), steps
    )
    trainer.train(model_dir, pairs, it.model, loss_cfg, seed=seed, desc=f"iter {it.t} retrain", max_steps=steps)
    for weights in selection_dir.glob("*.safetensors*"):  # only its summary and log are kept (shards too)
        weights.unlink()
    return str(it.model)


def watched_train_log(it: IterationDir) -> Path:
    """The log a dashboard follows while iteration `it` trains: that of the run that makes M_t (with
    retrain_with_heldout, the retrain; the selection run's log is kept in model_selection/)."""
    return live_train_log(it.model)


def iteration_train_summary(it: IterationDir) -> dict:
    """metrics.json's "train": the summary of the run that made M_t, with the selection run's choice."""
    if (it.path / "train_skipped.json").exists():
        return {"steps": 0, **read_json(it.path / "train_skipped.json")}
    summary = read_json(it.model / "train_summary.json") if (it.model / "train_summary.json").exists() else {}
    selection = it.path / "model_selection" / "train_summary.json"
    if selection.exists():  # the retrained model's step count came from this selection run
        chosen = read_json(selection)
        summary.update(selected_step=chosen["selected_step"], held_out_accuracy=chosen["held_out_accuracy"])
    return summary
