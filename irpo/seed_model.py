"""The seed model M0: a given checkpoint, a GGUF file imported once (cached), or the tiny model built and SFT'd
here (cached)."""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import shutil
from pathlib import Path

from omegaconf import OmegaConf

from irpo.config import LossConfig, TorchTrainerConfig, TrainerConfig
from irpo.models.gguf import import_gguf
from irpo.models.loading import check_seed_source, pick_device
from irpo.models.precision import autocast_dtype
from irpo.models.tiny import save_untrained
from irpo.setting import asdict_by_first_names
from irpo.training import TorchTrainer

log = logging.getLogger(__name__)


def prepare_seed_model(cfg, task) -> str:
    """The path or hub id of M0. A GGUF file is imported once per file hash, a tiny model built once per
    (architecture, task, SFT); both are reused from the cache after."""
    check_seed_source(cfg.model)
    if cfg.model.gguf_file is not None:
        return import_gguf(cfg.model.gguf_file)
    if cfg.model.name_or_path is not None:
        return cfg.model.name_or_path
    seed_examples = task.seed_examples()
    if not seed_examples:
        raise ValueError(
            f"model=tiny is made by SFT on gold solutions, and task '{task.name}' has none; "
            "pick a pretrained model (model=<name> or model.name_or_path=<dir>)"
        )
    recipe = tiny_recipe(cfg, task)
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:12]
    cache_root = Path(cfg.model.tiny.cache_dir).expanduser()
    cache_root.mkdir(parents=True, exist_ok=True)
    target = cache_root / f"tiny-{task.name}-{key}"
    # Parallel sweep jobs share the cache: one builds, the others wait on the lock and reuse it.
    with open(cache_root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (target / "train_summary.json").exists():
            log.info("seed model M0: reusing %s", target)
            return str(target)
        log.info(
            "seed model M0: building the tiny model and SFT-ing it on %d gold solutions -> %s",
            len(seed_examples),
            target,
        )
        build_tiny_seed_model(cfg, task, seed_examples, target)
        (target / "recipe.json").write_text(json.dumps(recipe, indent=2))
        return str(target)


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
    # Likewise a mixed-precision SFT (resolved on this machine: trainer.torch.mixed_precision=auto) is its own M0.
    mixed = autocast_dtype(cfg.trainer.torch.mixed_precision, pick_device(cfg.trainer.torch.device), cfg.model.dtype)
    if mixed is not None:
        recipe["sft_autocast"] = str(mixed).removeprefix("torch.")
    recipe["tiny"].pop("cache_dir")
    return recipe


def build_tiny_seed_model(cfg, task, seed_examples: list, target: Path) -> None:
    """The tiny model, initialised and SFT'd on the gold solutions of `seed_examples` into `target`."""
    spec = cfg.model.tiny
    untrained = target.with_name(f"{target.name}.untrained")
    shutil.rmtree(untrained, ignore_errors=True)
    save_untrained(spec, untrained, spec.init_seed)
    rows = [{"prompt": task.prompt(e), "chosen": e.gold_solution} for e in seed_examples]
    sft = TrainerConfig(
        lr=spec.seed_sft_lr,
        batch_size=spec.seed_sft_batch_size,
        micro_batch_size=spec.seed_sft_batch_size,
        max_steps=spec.seed_sft_steps,
        epochs=1e9,
        warmup_steps=min(20, spec.seed_sft_steps // 10),
        lr_schedule=spec.seed_sft_schedule,
        torch=TorchTrainerConfig(device=cfg.trainer.torch.device, mixed_precision=cfg.trainer.torch.mixed_precision),
        packing=cfg.trainer.packing,
    )
    TorchTrainer(sft, cfg.model).train(
        untrained, rows, target, LossConfig(name="sft"), seed=spec.init_seed, desc="seed SFT (M0)"
    )
    shutil.rmtree(untrained, ignore_errors=True)
