"""The seed model M0: a given checkpoint or a GGUF file imported once (cached), optionally adapted to the task by a
short seed SFT on gold solutions (`model.seed_sft`, cached), or the tiny model built and SFT'd here (cached)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from collections.abc import Callable
from pathlib import Path

from omegaconf import OmegaConf

from irpo.config import LossConfig, TorchTrainerConfig, TrainerConfig
from irpo.files import read_json
from irpo.models.gguf import default_cache_dir, import_gguf
from irpo.models.loading import check_seed_source, load_tokenizer, pick_device
from irpo.models.precision import autocast_dtype
from irpo.models.tiny import save_untrained
from irpo.models.tokens import render_prompt
from irpo.setting import asdict_by_first_names
from irpo.training import TorchTrainer

log = logging.getLogger(__name__)


def prepare_seed_model(cfg, task) -> str:
    """The path or hub id of M0. A GGUF file is imported once per file hash, a tiny model built once per
    (architecture, task, SFT); both are reused from the cache after."""
    check_seed_source(cfg.model)
    if cfg.model.gguf_file is not None or cfg.model.name_or_path is not None:
        pretrained = import_gguf(cfg.model.gguf_file) if cfg.model.gguf_file is not None else cfg.model.name_or_path
        return (
            seed_sft_model(cfg, task, pretrained)
            if cfg.model.seed_sft.steps > 0 and not cfg.skip_seed_sft
            else pretrained
        )
    seed_examples = task.seed_examples()
    if not seed_examples:
        raise ValueError(
            f"model=tiny is made by SFT on gold solutions, and task '{task.name}' has none; "
            "pick a pretrained model (model=<name> or model.name_or_path=<dir>)"
        )
    recipe = tiny_recipe(cfg, task)

    def build(target: Path) -> None:
        log.info(
            "seed model M0: building the tiny model and SFT-ing it on %d gold solutions -> %s",
            len(seed_examples),
            target,
        )
        build_tiny_seed_model(cfg, task, seed_examples, target)

    return cached_model(Path(cfg.model.tiny.cache_dir), f"tiny-{task.name}", recipe, build)


def cached_model(cache_root: Path, prefix: str, recipe: dict, build: Callable[[Path], None]) -> str:
    """The model directory `<prefix>-<hash of recipe>` in the cache, built by `build` on first use. Parallel sweep
    jobs share the cache: one builds, the others wait on the lock and reuse it."""
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    cache_root = cache_root.expanduser()
    cache_root.mkdir(parents=True, exist_ok=True)
    target = cache_root / f"{prefix}-{key}"
    with open(cache_root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "train_summary.json").exists():
            log.info("seed model M0: reusing %s", target)
            return str(target)
        build(target)
        (target / "recipe.json").write_text(json.dumps(recipe, indent=2))
        return str(target)


def seed_sft_model(cfg, task, pretrained: str) -> str:
    """M0 = the pretrained model after `model.seed_sft.steps` of SFT on the task's gold solutions (prompts as the
    model reads them, chat template included), cached by everything that makes it."""
    examples = [e for e in task.seed_examples() if e.gold_solution]
    if not examples:
        raise ValueError(f"model.seed_sft needs gold solutions, and task '{task.name}' has none to give")
    sft = cfg.model.seed_sft
    recipe = {
        "pretrained": pretrained_identity(pretrained),
        "seed_sft": OmegaConf.to_container(sft, resolve=True),
        "task": asdict_by_first_names(task.cfg),
        "dtype": cfg.model.dtype,
        "chat_template": cfg.model.use_chat_template,
        "sft_packing": cfg.trainer.packing,
        "sft_autocast": resolved_autocast(cfg),
    }

    def build(target: Path) -> None:
        log.info(
            "seed model M0: %d SFT steps of %s on %d gold solutions -> %s", sft.steps, pretrained, len(examples), target
        )
        tokenizer = load_tokenizer(pretrained)
        rows = [
            {"prompt": render_prompt(task, e, tokenizer, cfg.model.use_chat_template), "chosen": e.gold_solution}
            for e in examples
        ]
        trainer_cfg = sft_trainer_config(cfg, sft.lr, sft.batch_size, sft.steps, sft.warmup_steps, "constant")
        TorchTrainer(trainer_cfg, cfg.model).train(
            pretrained, rows, target, LossConfig(name="sft"), seed=0, desc="seed SFT (M0)"
        )

    return cached_model(default_cache_dir(), f"sft-{cfg.model.name}-{task.name}", recipe, build)


def pretrained_identity(pretrained: str) -> str:
    """What names the pretrained weights in a cache key: an imported GGUF directory's file hash, else the path or
    hub id as given."""
    marker = Path(pretrained) / "gguf_source.json"
    return f"gguf:{read_json(marker)['sha256']}" if marker.exists() else pretrained


def resolved_autocast(cfg) -> str | None:
    """The seed SFT's autocast as this machine resolves trainer.torch.mixed_precision (auto: bf16 where the device
    multiplies it natively): a mixed-precision SFT agrees with a float32 one to rounding only, so it is its own M0."""
    mixed = autocast_dtype(cfg.trainer.torch.mixed_precision, pick_device(cfg.trainer.torch.device), cfg.model.dtype)
    return None if mixed is None else str(mixed).removeprefix("torch.")


def sft_trainer_config(cfg, lr: float, batch_size: int, steps: int, warmup_steps: int, schedule: str) -> TrainerConfig:
    """The trainer settings of a seed SFT: the run's device, precision and packing; its own lr, batch and steps."""
    return TrainerConfig(
        lr=lr,
        batch_size=batch_size,
        micro_batch_size=batch_size,
        max_steps=steps,
        epochs=1e9,
        warmup_steps=warmup_steps,
        lr_schedule=schedule,
        torch=TorchTrainerConfig(device=cfg.trainer.torch.device, mixed_precision=cfg.trainer.torch.mixed_precision),
        packing=cfg.trainer.packing,
    )


def tiny_recipe(cfg, task) -> dict:
    """Everything that makes the tiny M0, the key of its cache directory. Keyed by the typed task config, so a
    changed task default is a new M0, never a stale one (renamed task keys under their first names, so the
    M0s cached before a rename stay valid)."""
    recipe = {
        "tiny": OmegaConf.to_container(cfg.model.tiny, resolve=True),
        "task": asdict_by_first_names(task.cfg),
        "dtype": cfg.model.dtype,
    }
    # Packed and padded SFT agree to rounding, not to the bit: each builds its own M0 (padded is how M0 was
    # built before packing existed, so its key, and the M0s cached under it, stay valid).
    if cfg.trainer.packing != "padded":
        recipe["sft_packing"] = cfg.trainer.packing
    mixed = resolved_autocast(cfg)
    if mixed is not None:
        recipe["sft_autocast"] = mixed
    recipe["tiny"].pop("cache_dir")
    return recipe


def build_tiny_seed_model(cfg, task, seed_examples: list, target: Path) -> None:
    """The tiny model, initialised and SFT'd on the gold solutions of `seed_examples` into `target`."""
    spec = cfg.model.tiny
    untrained = target.with_name(f"{target.name}.untrained")
    shutil.rmtree(untrained, ignore_errors=True)
    save_untrained(spec, untrained, spec.init_seed)
    rows = [{"prompt": task.prompt(e), "chosen": e.gold_solution} for e in seed_examples]
    warmup = min(20, spec.seed_sft_steps // 10)
    sft = sft_trainer_config(
        cfg, spec.seed_sft_lr, spec.seed_sft_batch_size, spec.seed_sft_steps, warmup, spec.seed_sft_schedule
    )
    TorchTrainer(sft, cfg.model).train(
        untrained, rows, target, LossConfig(name="sft"), seed=spec.init_seed, desc="seed SFT (M0)"
    )
    shutil.rmtree(untrained, ignore_errors=True)
