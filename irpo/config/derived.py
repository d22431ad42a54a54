"""Facts the loop derives from the config, each decided here and nowhere else."""

from __future__ import annotations

from typing import Any

from omegaconf import OmegaConf

from irpo.config.keys import config_keys


def selects_checkpoints(trainer_cfg: Any) -> bool:
    """Whether an iteration picks its best step on held-out questions (trainer.eval_every > 0). The loop then
    hands the trainer a scorer; a trainer given one scores every trainer.eval_every steps and the last."""
    return bool(trainer_cfg.eval_every > 0)


def temperature_for(generation_cfg: Any, iteration: int) -> float:
    """Iteration t (1-based) samples at temperatures[t-1]; the last value repeats."""
    temperatures = list(generation_cfg.temperatures)
    return float(temperatures[min(iteration, len(temperatures)) - 1])


def paper_departures(cfg: Any) -> list[str]:
    """The paper's hyper-parameters this config moves ("trainer.lr=0.0005 (paper: 7e-07)"), the run logs them at
    start. The schema's defaults are the paper's; α and β are the DPO + NLL loss's (α = 0 is the DPO baseline,
    and SFT has neither, so neither departs)."""
    keys = ["trainer.lr", "trainer.batch_size"]
    if cfg.loss.name == "dpo_nll":
        keys += ["loss.alpha"] if cfg.loss.alpha != 0 else []
        keys += ["loss.beta"]
    paper = {k.key: k.default for k in config_keys()}
    values = {key: OmegaConf.select(cfg, key) for key in keys}
    return [f"{key}={values[key]} (paper: {paper[key]})" for key in keys if values[key] != paper[key]]
