"""LoRA adapters (trainer.lora.*) through peft, shared by the torch and DeepSpeed trainers.

An iteration trains adapters on the frozen M_{t-1}, then merges them into the weights: M_t is saved as
a plain model directory, so the next iteration's sampler and reference log-probs use exactly M_t and
nothing downstream knows LoRA was used. No reference model sits in memory while training: the
reference log-probs are computed once, before the first update (irpo/training/step.py).
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import torch

ADAPTER_DIR = "adapter"  # iter_t/model/adapter/: the adapter alone, with trainer.lora.save_adapter=true


def enabled(lora_cfg) -> bool:
    return lora_cfg is not None and lora_cfg.rank > 0


def check_config(lora_cfg) -> None:
    """Checks that need no model: sizes, and peft installed. Target module names are checked against the
    model itself (`check_target_modules`)."""
    if lora_cfg.rank < 0:
        raise ValueError(f"trainer.lora.rank must be >= 0 (0 = LoRA off), not {lora_cfg.rank}")
    if not enabled(lora_cfg):
        return
    if not lora_cfg.target_modules:
        raise ValueError("trainer.lora.target_modules is empty: name the linear layers to adapt, e.g. [q_proj,v_proj]")
    if not 0 <= lora_cfg.dropout < 1:
        raise ValueError(f"trainer.lora.dropout must be in [0, 1), not {lora_cfg.dropout}")
    if importlib.util.find_spec("peft") is None:
        raise ValueError("trainer.lora.rank > 0 needs peft: pip install -e '.[lora]'")


def linear_layer_names(model: torch.nn.Module) -> list[str]:
    """The names LoRA can target: the last component of every nn.Linear's module path (q_proj, lm_head, ...)."""
    return sorted(
        {
            name.rsplit(".", 1)[-1]
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear) and name
        }
    )


def check_target_modules(model: torch.nn.Module, target_modules) -> None:
    names = linear_layer_names(model)
    unknown = [m for m in target_modules if m not in names]
    if unknown:
        raise ValueError(
            f"trainer.lora.target_modules: {', '.join(unknown)} name no linear layer of this model; "
            f"its linear layers are: {', '.join(names)}"
        )


def check_target_modules_of(model_cfg, lora_cfg) -> None:
    """The same check before any work, on the architecture alone (built on the meta device, no weights):
    the tiny model from its settings, a local model directory from its config.json. A hub id is checked
    when the trainer loads it."""
    from transformers import AutoConfig, AutoModelForCausalLM

    if model_cfg.tiny is not None:
        from irpo.models.tiny import build_char_tokenizer, build_tiny_model

        with torch.device("meta"):
            model = build_tiny_model(model_cfg.tiny, build_char_tokenizer(), seed=0)
    else:
        path = Path(str(model_cfg.name_or_path)).expanduser()
        if not (path / "config.json").exists():
            return
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(path))
    check_target_modules(model, lora_cfg.target_modules)


def wrap(model, lora_cfg, seed: int, gradient_checkpointing: bool = False):
    """The PeftModel that trains only the adapters (A seeded, B = 0, so it starts as the model itself).

    Seeded here, so the adapters' initial values do not depend on how the base was loaded (the torch
    trainer and every DeepSpeed rank start from the same ones)."""
    from peft import LoraConfig, get_peft_model

    check_target_modules(model, lora_cfg.target_modules)
    if gradient_checkpointing:  # frozen embeddings: checkpointed blocks need an input that requires grad
        model.enable_input_require_grads()
    torch.manual_seed(seed)
    config = LoraConfig(
        r=lora_cfg.rank,
        lora_alpha=lora_cfg.alpha,
        lora_dropout=lora_cfg.dropout,
        target_modules=list(lora_cfg.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def trainable_state(model) -> dict[str, torch.Tensor]:
    """A CPU copy of the trained parameters: the adapters under LoRA (small), every weight otherwise.
    Checkpoint selection keeps the best step's copy in memory."""
    return {name: p.detach().to("cpu", copy=True) for name, p in model.named_parameters() if p.requires_grad}


@torch.no_grad()
def restore_trainable_state(model, state: dict[str, torch.Tensor]) -> None:
    for name, p in model.named_parameters():
        if name in state:
            p.copy_(state[name])


def save_merged(model, directory: Path, lora_cfg) -> None:
    """Saves a PeftModel as M_t: the adapters merged into the weights, a plain save_pretrained directory
    (and the adapter alone in directory/adapter/ with trainer.lora.save_adapter)."""
    if lora_cfg.save_adapter:
        model.save_pretrained(directory / ADAPTER_DIR, safe_serialization=True)
    model.merge_and_unload().save_pretrained(directory, safe_serialization=True)


def merge_saved_adapter(init_model_dir, directory: Path, dtype: str, keep_adapter: bool) -> None:
    """directory/adapter/ (saved by the DeepSpeed ranks) merged into M_{t-1}'s weights, saved in directory."""
    from peft import PeftModel

    from irpo.models.loading import load_model

    adapter = directory / ADAPTER_DIR
    merged = PeftModel.from_pretrained(load_model(init_model_dir, dtype, "cpu"), adapter).merge_and_unload()
    merged.save_pretrained(directory, safe_serialization=True)
    if not keep_adapter:
        shutil.rmtree(adapter)


def count_parameters(model) -> dict[str, int]:
    def size(p) -> int:  # a ZeRO-3 shard knows its full size as ds_numel
        return getattr(p, "ds_numel", p.numel())

    return {
        "trainable_parameters": sum(size(p) for p in model.parameters() if p.requires_grad),
        "parameters": sum(size(p) for p in model.parameters()),
    }


def summary(lora_cfg) -> dict | None:
    """What train_summary.json records about the adapters (null: full fine-tuning)."""
    if not enabled(lora_cfg):
        return None
    return {
        "rank": lora_cfg.rank,
        "alpha": lora_cfg.alpha,
        "dropout": lora_cfg.dropout,
        "target_modules": list(lora_cfg.target_modules),
        "merged": True,
    }
