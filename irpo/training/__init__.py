"""Trainers by name: each turns pairs and a model directory into a new model directory (`irpo.protocols.Trainer`)."""

from __future__ import annotations

from irpo.protocols import Trainer
from irpo.registry import Registry
from irpo.training.deepspeed_trainer import DeepSpeedTrainer
from irpo.training.torch_trainer import TorchTrainer

TRAINERS: Registry[type] = Registry("trainer")
TRAINERS.register("torch")(TorchTrainer)  # this process, one device
TRAINERS.register("deepspeed")(DeepSpeedTrainer)  # ZeRO-2/3 over trainer.deepspeed.num_processes ranks x nodes


def build_trainer(trainer_cfg, model_cfg, cluster_cfg) -> Trainer:
    return TRAINERS.get(trainer_cfg.name)(trainer_cfg, model_cfg, cluster_cfg)


__all__ = ["TRAINERS", "build_trainer"]
