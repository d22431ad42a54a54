"""Shared fixtures: the real config composed as `python -m irpo` would, and the ../shared material."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir

from irpo.config import register_configs

CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")
register_configs()

# One thread per process, here and in the `python -m irpo` children: the tiny models gain little from a
# second one, and on a shared machine OpenMP threads that wait for each other multiply the time (a training
# test took 3 s at one thread and 58 s at two, under load). Set OMP_NUM_THREADS to choose otherwise.
os.environ.setdefault("OMP_NUM_THREADS", "1")
torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session", autouse=True)
def model_cache(tmp_path_factory):
    """One tiny-M0 cache for the whole session, so each test does not re-run the seed SFT."""
    cache = os.environ.get("IRPO_TEST_CACHE") or str(tmp_path_factory.mktemp("irpo_cache"))
    os.environ["IRPO_CACHE"] = cache
    return Path(cache)


@pytest.fixture
def make_config(tmp_path):
    """compose(overrides) -> the config `python -m irpo <overrides>` would run, with run_dir in tmp_path."""

    def make(*overrides: str, run_dir: Path | None = None):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            return compose("config", overrides=[f"run_dir={run_dir or tmp_path / 'run'}", *overrides])

    return make


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (datasets, stories260K), found through IRPO_SHARED_DIR; tests skip when it is absent."""
    value = os.environ.get("IRPO_SHARED_DIR")
    if not value:
        pytest.skip("IRPO_SHARED_DIR is not set; point it at the shared/ folder (datasets, models) to run this test")
    path = Path(value)
    if not (path / "datasets").is_dir():
        pytest.skip(f"IRPO_SHARED_DIR={value} has no datasets/ folder")
    return path


@pytest.fixture(scope="session")
def untrained_tiny(tmp_path_factory) -> Path:
    """The embedded tiny Llama and character tokenizer, freshly initialised (no seed SFT), as a model dir."""
    from irpo.config import TinyModelConfig
    from irpo.models.tiny import save_untrained

    directory = tmp_path_factory.mktemp("tiny_untrained")
    save_untrained(TinyModelConfig(), directory, seed=0)
    return directory


def arithmetic_pairs(count: int, seed: int = 0) -> list[dict]:
    """(prompt, correct CoT, CoT with a wrong final answer) triples in the arithmetic task's format."""
    import random

    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        a, b = rng.randint(1, 50), rng.randint(1, 50)
        pairs.append(
            {
                "prompt": f"Question: What is {a} + {b}?\nAnswer:",
                "chosen": f" {a} + {b} = {a + b}\nFinal answer: {a + b}",
                "rejected": f" {a} + {b} = {a + b + 1}\nFinal answer: {a + b + 1}",
            }
        )
    return pairs


@pytest.fixture(scope="module")
def task_pairs(tmp_path_factory) -> list[dict]:
    """Real pairs of the embedded task: the gold solution against another question's, so responses and
    prompts differ in length and a micro-batch packs several pairs into a row."""
    import itertools

    from irpo.tasks import build_task

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("config", overrides=[f"run_dir={tmp_path_factory.mktemp('run')}"])
    task = build_task(cfg.task)
    examples = task.load_splits().train[:9]
    return [
        {"prompt": task.prompt(e), "chosen": e.gold_solution, "rejected": other.gold_solution}
        for e, other in itertools.pairwise(examples)
    ]


def with_lora_and_checkpointing(model, std: float = 0.05):
    """The model with gradient checkpointing and rank-4 LoRA adapters whose B is drawn (not 0), in train mode."""
    from irpo.config import LoraConfig
    from irpo.training import lora
    from irpo.training.checkpointing import enable_checkpointing

    enable_checkpointing(model, "full")
    model = lora.wrap(model, LoraConfig(rank=4, alpha=8.0), seed=0, gradient_checkpointing=True)
    model.train()
    for name, p in model.named_parameters():  # B = 0 at the start; make the adapters do something
        if "lora_B" in name:
            torch.nn.init.normal_(p, std=std, generator=torch.Generator().manual_seed(1))
    return model
