"""`validate(cfg)`: the checks that need more than types, made once before any work (irpo.loop.run)."""

from __future__ import annotations

from omegaconf import DictConfig

from irpo.config.derived import selects_checkpoints
from irpo.loss import LOSSES
from irpo.models.loading import check_seed_source
from irpo.pairs import PAIR_BUILDERS
from irpo.sampling import SAMPLERS
from irpo.tasks import task_config
from irpo.tracking import TRACKERS
from irpo.training import TRAINERS, lora
from irpo.training.checkpointing import check_checkpointing
from irpo.training.logprobs import check_chunking
from irpo.training.optim import check_lr_schedule
from irpo.training.packing import check_packing


class ConfigError(ValueError):
    """A config that cannot work, found before any work: `python -m irpo` prints its message as one line."""


def validate(cfg: DictConfig) -> None:
    """Registered names, consistent sizes, a seed model given. Each chosen part (task, loss, pair builder,
    sampler, trainer, logger) checks its own section (`irpo.protocols.ChecksConfig`)."""
    task_config(cfg.task)  # the task's typed config: unknown or renamed keys fail here
    for registry, name in (
        (LOSSES, cfg.loss.name),
        (PAIR_BUILDERS, cfg.pairs.builder),
        (SAMPLERS, cfg.sampler.name),
        (TRAINERS, cfg.trainer.name),
        (TRACKERS, cfg.logger.name),
    ):
        registry.check(name, cfg)
    check_seed_source(cfg.model)
    _check_seed_sft(cfg.model)
    if cfg.skip_seed_sft and not _is_pretrained(cfg.model):
        raise ValueError(
            "skip_seed_sft (method=zero_shot_pretrained) needs a pretrained model; the tiny model has no "
            "published weights to evaluate"
        )
    _check_trainer(cfg)
    if cfg.pairs.data_multiplier < 1 or cfg.pairs.pairs_per_prompt < 1:
        raise ValueError("pairs.pairs_per_prompt and pairs.data_multiplier must be >= 1")
    if not cfg.generation.temperatures:
        raise ValueError("generation.temperatures needs at least one value")
    if cfg.iterations < 0:
        raise ValueError("iterations must be >= 0")
    if cfg.sampler.shard_prompts < 1:
        raise ValueError(f"sampler.shard_prompts must be >= 1, not {cfg.sampler.shard_prompts}")


def _is_pretrained(model) -> bool:
    """A pretrained model (a GGUF file or a hub id / directory), not the tiny model built here."""
    return model.gguf_file is not None or model.name_or_path is not None


def _check_seed_sft(model) -> None:
    sft = model.seed_sft
    if sft.steps < 0 or sft.batch_size < 1 or sft.lr <= 0 or sft.warmup_steps < 0:
        raise ValueError(
            "model.seed_sft needs steps >= 0, batch_size >= 1, lr > 0 and warmup_steps >= 0, not "
            f"steps={sft.steps}, batch_size={sft.batch_size}, lr={sft.lr}, warmup_steps={sft.warmup_steps}"
        )
    if sft.steps and not _is_pretrained(model):
        raise ValueError(
            "model.seed_sft is a pretrained model's seed SFT; the tiny model's own is model.tiny.seed_sft_steps"
        )


def _check_trainer(cfg: DictConfig) -> None:
    """The trainer section's shared keys (each backend checks its own: `check` on the trainer's class)."""
    trainer = cfg.trainer
    if trainer.batch_size % trainer.micro_batch_size:
        raise ValueError(
            f"trainer.batch_size ({trainer.batch_size}) must be a multiple of "
            f"trainer.micro_batch_size ({trainer.micro_batch_size})"
        )
    if trainer.eval_every < 0:
        raise ValueError(f"trainer.eval_every must be >= 0 (0 = no checkpoint selection), not {trainer.eval_every}")
    if trainer.retrain_with_heldout and not selects_checkpoints(trainer):
        raise ValueError("trainer.retrain_with_heldout needs checkpoint selection: set trainer.eval_every > 0")
    if trainer.epochs is not None and trainer.epochs <= 0:
        raise ValueError(f"trainer.epochs must be > 0 or null (no epoch cap), not {trainer.epochs}")
    if trainer.save_every < 0:
        raise ValueError(f"trainer.save_every must be >= 0 (0 = no mid-training checkpoints), not {trainer.save_every}")
    if trainer.select_examples is not None and trainer.select_examples <= 0:
        raise ValueError("trainer.select_examples must be > 0 or null (the whole held-out split)")
    lora.check_config(trainer.lora)
    if lora.enabled(trainer.lora):  # an unknown target module fails now, not after a generation stage
        lora.check_target_modules_of(cfg.model, trainer.lora)
    check_lr_schedule(trainer.lr_schedule)  # fails here, not after a generation stage
    check_packing(trainer.packing)
    check_checkpointing(trainer)
    check_chunking(trainer)
