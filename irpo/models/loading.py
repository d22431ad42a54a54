"""Loading models and tokenizers from a local directory or a hub id, with errors that say what is wrong."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerBase
from transformers.utils import logging as hf_logging

from irpo.hub import require_hub
from irpo.models.gguf import check_gguf_source

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@contextlib.contextmanager
def no_progress_bars() -> Iterator[None]:
    """transformers' per-shard loading bars off while a model loads (they would bury the loop's log);
    the setting is restored after, so importing or calling this module changes nothing global."""
    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def looks_like_path(name_or_path: str) -> bool:
    return name_or_path.startswith(("/", "./", "../", "~")) or (
        os.sep in name_or_path and Path(name_or_path).parent.exists()
    )


def check_model_source(name_or_path: str) -> None:
    """Fail early, naming the problem, for a local model directory that is missing or incomplete."""
    path = Path(os.path.expanduser(name_or_path))
    if path.exists():
        if not (path / "config.json").exists():
            raise FileNotFoundError(f"model directory {path} has no config.json; is it a save_pretrained directory?")
    elif looks_like_path(name_or_path):
        raise FileNotFoundError(f"model directory {path} does not exist (model.name_or_path={name_or_path!r})")


def check_seed_source(model_cfg) -> None:
    """Config-time check of where M0 comes from. model.gguf_file, then model.name_or_path, then model.tiny:
    the first one set wins (so presets that size the tiny model, like experiment=smoke, leave others alone)."""
    if model_cfg.gguf_file is not None:
        if model_cfg.name_or_path is not None:
            raise ValueError(
                f"model.gguf_file={model_cfg.gguf_file} and model.name_or_path="
                f"{model_cfg.name_or_path} are both set; M0 comes from one of them: unset the other"
            )
        check_gguf_source(model_cfg.gguf_file)
    elif model_cfg.name_or_path is not None:
        check_model_source(model_cfg.name_or_path)
    elif model_cfg.tiny is None:
        raise ValueError(
            "model.name_or_path is not set: give a local model directory, a hub id, or a GGUF file (model.gguf_file)"
        )


def pick_device(requested: str) -> torch.device:
    if requested == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(requested)


def require_local_or_hub(name_or_path: str | Path) -> None:
    """A model that is not a local directory comes from the hub: fail at once, saying what to do, if the hub
    cannot be reached (the loaders would retry for half a minute first)."""
    check_model_source(str(name_or_path))
    if not Path(os.path.expanduser(str(name_or_path))).exists():
        require_hub(str(name_or_path), "model", instead="give model.name_or_path=<a local model directory>")


def load_tokenizer(name_or_path: str | Path) -> PreTrainedTokenizerBase:
    require_local_or_hub(name_or_path)
    try:
        tokenizer = AutoTokenizer.from_pretrained(os.path.expanduser(str(name_or_path)))
    except OSError as e:
        raise OSError(
            f"could not load a tokenizer from {name_or_path!r}: not a local directory, and the hub "
            f"could not provide it (offline?): {e}"
        ) from None
    if tokenizer.pad_token_id is None:  # Llama tokenizers ship without one; padding is always masked
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"  # batches of training sequences are right-padded (samplers pad by hand)
    return tokenizer


def load_model(name_or_path: str | Path, dtype: str = "float32", device: str = "cpu"):
    require_local_or_hub(name_or_path)
    if dtype not in DTYPES:
        raise ValueError(f"unknown model.dtype '{dtype}'; valid dtypes: {', '.join(DTYPES)}")
    try:
        with no_progress_bars():
            model = AutoModelForCausalLM.from_pretrained(os.path.expanduser(str(name_or_path)), dtype=DTYPES[dtype])
    except OSError as e:
        raise OSError(
            f"could not load a model from {name_or_path!r}: not a local directory, and the hub "
            f"could not provide it (offline?): {e}"
        ) from None
    return model.to(pick_device(device))  # type: ignore[arg-type]  # transformers' wrapper of .to hides its signature
