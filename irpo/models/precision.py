"""Which floating-point format the matrix math runs in: float32, or bfloat16 where the device does it natively.

On this project's 2-core CPU (AVX-512 with avx512_bf16) a bfloat16 matmul of the shapes these models use
runs 2.3-3.5x float32's FLOP/s (docs/performance.md); a CPU without bf16 instructions emulates it, slower than
float32, so `auto` picks bfloat16 only where the device has them.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from pathlib import Path

import torch

MIXED_PRECISION = ("auto", "bf16", "none")
SAMPLING_DTYPES = ("auto", "model", "float32", "bfloat16", "float16")
# Below this much weight data a model's decode steps are too small for bfloat16 to pay: the embedded 1M-parameter
# model drew 5.0-5.9k tokens/s in bfloat16 against 7.0-7.5k in float32 here; SmolLM2-135M (540 MB) 304 vs 166.
MIN_BF16_SAMPLING_BYTES = 100 * 2**20
CPU_BF16_FLAGS = {"avx512_bf16", "amx_bf16"}  # x86 instructions that multiply bfloat16 natively


@functools.cache
def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (its flags in /proc/cpuinfo; False where there is none)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return False
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return bool(CPU_BF16_FLAGS & set(flags))


def native_bf16(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and cpu_has_native_bf16()


def check_choice(setting: str, choices: tuple[str, ...], key: str) -> None:
    if setting not in choices:
        raise ValueError(f"{key} must be one of {', '.join(choices)}, not {setting!r}")


def check_mixed_precision(setting: str, key: str) -> None:
    check_choice(setting, MIXED_PRECISION, key)


def autocast_dtype(setting: str, device: torch.device, model_dtype: str = "float32") -> torch.dtype | None:
    """The dtype training's forward passes autocast to, or None for no autocast.

    bf16: matmuls and attention in bfloat16 under torch.autocast; weights, optimizer state, log-softmax and
    the loss stay in the weights' dtype (mixed precision, not bfloat16 weights). auto: bf16 where the weights
    are float32 and `device` has native bfloat16 (a GPU that supports it, a CPU with avx512_bf16 or AMX),
    else none (half-precision weights are left as they are).
    """
    check_mixed_precision(setting, "mixed_precision")
    if setting == "bf16" or (setting == "auto" and model_dtype == "float32" and native_bf16(device)):
        return torch.bfloat16
    return None


@contextlib.contextmanager
def autocast(dtype: torch.dtype | None, device: torch.device) -> Iterator[None]:
    """torch.autocast to `dtype` on `device`'s type; nothing when dtype is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device.type, dtype=dtype):
        yield


def weights_bytes(model_dir: str | Path) -> int:
    return sum(f.stat().st_size for f in Path(model_dir).glob("*.safetensors"))


def check_sampling_dtype(setting: str, key: str) -> None:
    check_choice(setting, SAMPLING_DTYPES, key)


def sampling_dtype(setting: str, model_dtype: str, device: torch.device, model_dir: str | Path) -> tuple[str, str]:
    """(the dtype the sampler loads the weights in, why). model: model.dtype. auto: bfloat16 where `device`
    multiplies it natively and the model has at least MIN_BF16_SAMPLING_BYTES of weights, else model.dtype."""
    check_sampling_dtype(setting, "sampler.hf.dtype")
    if setting == "model":
        return model_dtype, "model.dtype"
    if setting != "auto":
        return setting, "set"
    if model_dtype != "float32":
        return model_dtype, "model.dtype"
    if not native_bf16(device):
        return model_dtype, f"no native bfloat16 on {device.type}"
    local = Path(model_dir).expanduser()
    if not local.is_dir():  # a hub id: a pretrained model, large enough to gain
        return "bfloat16", f"native bfloat16 on {device.type}, a hub model"
    size = weights_bytes(local)
    if size < MIN_BF16_SAMPLING_BYTES:
        return model_dtype, f"{size / 2**20:.0f} MB of weights, too small for bfloat16 to pay"
    return "bfloat16", f"native bfloat16 on {device.type}, {size / 2**20:.0f} MB of weights"
