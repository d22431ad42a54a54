"""A training stage killed at any moment continues from its last checkpoint and ends exactly where an
uninterrupted run ends: the same weights byte for byte, each step logged once, `resumed_from_step` > 0."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import arithmetic_pairs
from omegaconf import OmegaConf

from irpo.config import ClusterConfig, LossConfig, ModelConfig, TorchTrainerConfig, TrainerConfig
from irpo.training import build_trainer
from irpo.training.resume import CHECKPOINT, ResumeError, cut_log, resume_dir

STEPS, SAVE_EVERY = 24, 4
# One training job, as the loop runs it, in a process of its own that the test can kill.
TRAIN = """
import sys
from pathlib import Path
from omegaconf import OmegaConf
sys.path.insert(0, {tests!r})
from conftest import arithmetic_pairs
from irpo.config import ClusterConfig, DeepSpeedTrainerConfig, LossConfig, ModelConfig, TorchTrainerConfig
from irpo.config import TrainerConfig
from irpo.training import build_trainer
cfg = OmegaConf.structured(TrainerConfig(lr=1e-3, batch_size=4, micro_batch_size=2, max_steps={steps},
                                         save_every={save_every}, torch=TorchTrainerConfig(device="cpu")))
trainer = build_trainer(cfg, OmegaConf.structured(ModelConfig(name="tiny")), OmegaConf.structured(ClusterConfig()))
trainer.train({model!r}, arithmetic_pairs(12), Path({out!r}), OmegaConf.structured(LossConfig()), seed=3)
"""


def train_in_child(model: Path, out: Path) -> subprocess.Popen:
    code = TRAIN.format(
        tests=str(Path(__file__).parent), steps=STEPS, save_every=SAVE_EVERY, model=str(model), out=str(out)
    )
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def logged_steps(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture(scope="module")
def uninterrupted(untrained_tiny, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("uninterrupted") / "model"
    child = train_in_child(untrained_tiny, out)
    assert child.wait() == 0, child.stderr.read().decode()[-2000:]
    return out


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_killed_training_resumes_from_its_checkpoint_and_ends_identically(
    untrained_tiny, uninterrupted, tmp_path, trial
):
    out = tmp_path / "model"
    log = out.with_name("model.tmp") / "train_log.jsonl"
    # Kill -9 at a random moment after the first checkpoint: between checkpoints, or while one is written.
    kill_after = random.Random(trial).randint(SAVE_EVERY + 1, STEPS - 2)
    child = train_in_child(untrained_tiny, out)
    deadline = time.monotonic() + 300
    while logged_steps(log) < kill_after and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert child.poll() is None, "training finished before the test could kill it"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert (resume_dir(out.with_name("model.tmp")) / CHECKPOINT).exists() and not out.exists()

    rerun = train_in_child(untrained_tiny, out)
    assert rerun.wait() == 0, rerun.stderr.read().decode()[-2000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from_step"] > 0 and summary["resumed_from_step"] % SAVE_EVERY == 0
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == list(
        range(1, STEPS + 1)
    )
    assert (out / "model.safetensors").read_bytes() == (uninterrupted / "model.safetensors").read_bytes()
    assert not resume_dir(out).exists() and not out.with_name("model.tmp").exists()


def trainer(**overrides):
    cfg = OmegaConf.structured(
        TrainerConfig(
            lr=1e-3,
            batch_size=4,
            micro_batch_size=4,
            torch=TorchTrainerConfig(device="cpu"),
            **{"max_steps": 6, "save_every": 2, **overrides},
        )
    )
    return build_trainer(cfg, OmegaConf.structured(ModelConfig(name="tiny")), OmegaConf.structured(ClusterConfig()))


def test_unusable_checkpoints_say_which_file_and_what_to_delete(untrained_tiny, tmp_path):
    tmp_dir = tmp_path / "model.tmp"
    (resume_dir(tmp_dir)).mkdir(parents=True)
    checkpoint = resume_dir(tmp_dir) / CHECKPOINT
    train = lambda **kw: trainer(**kw).train(  # noqa: E731
        untrained_tiny,
        arithmetic_pairs(8),
        tmp_path / "model",
        OmegaConf.structured(LossConfig()),
        seed=0,
    )
    checkpoint.write_bytes(b"PK\x03\x04 cut off here")
    with pytest.raises(ResumeError, match=rf"{checkpoint} cannot be read .*delete {resume_dir(tmp_dir)}"):
        train()
    torch.save({"identity": {}, "step": 2, "model": {}}, checkpoint)  # no optimizer state
    with pytest.raises(ResumeError, match=r"lacks optimizer, scheduler, rng, scores.*incomplete checkpoint"):
        train()
    torch.save(
        {key: {} for key in ("optimizer", "scheduler", "rng", "scores", "model")}
        | {"identity": {"steps": 99}, "step": 2, "best_step": None, "best_score": -1.0},
        checkpoint,
    )
    with pytest.raises(ResumeError, match=r"another training job \(.*steps: 99 there, 6 now"):
        train()


def test_a_full_disk_while_checkpointing_keeps_the_previous_checkpoint(untrained_tiny, tmp_path, monkeypatch):
    import errno

    import irpo.training.resume as resume

    saves = []
    real_save = torch.save

    def save_then_fill_the_disk(obj, path, *args, **kwargs):
        saves.append(path)
        if len(saves) == 2:  # the second checkpoint (step 4) finds the disk full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(obj, path, *args, **kwargs)

    monkeypatch.setattr(resume.torch, "save", save_then_fill_the_disk)
    with pytest.raises(OSError, match="No space left"):
        trainer().train(
            untrained_tiny, arithmetic_pairs(8), tmp_path / "model", OmegaConf.structured(LossConfig()), seed=0
        )
    resume_files = sorted(p.name for p in resume_dir(tmp_path / "model.tmp").iterdir())
    assert resume_files == [CHECKPOINT]  # the step-2 checkpoint, whole; no partial file left
    assert torch.load(resume_dir(tmp_path / "model.tmp") / CHECKPOINT, weights_only=True)["step"] == 2
    monkeypatch.setattr(resume.torch, "save", real_save)
    summary = trainer().train(
        untrained_tiny, arithmetic_pairs(8), tmp_path / "model", OmegaConf.structured(LossConfig()), seed=0
    )
    assert summary["resumed_from_step"] == 2 and summary["steps"] == 6


def test_the_log_is_cut_back_to_the_checkpoint(tmp_path):
    log = tmp_path / "train_log.jsonl"
    log.write_text("".join(json.dumps({"step": s}) + "\n" for s in range(1, 8)) + '{"step": 8, "lo')
    cut_log(log, 4)
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 3, 4]


DEEPSPEED_TRAIN = TRAIN.replace(
    'torch=TorchTrainerConfig(device="cpu")',
    'torch=TorchTrainerConfig(device="cpu"), name="deepspeed", '
    "deepspeed=DeepSpeedTrainerConfig(num_processes={ranks}, zero_stage=3)",
)


def kill_everything(process: subprocess.Popen) -> None:
    """SIGKILL to a process and all its descendants (the DeepSpeed ranks under torchrun), as a preemption does."""
    import psutil

    parent = psutil.Process(process.pid)
    for proc in [*parent.children(recursive=True), parent]:
        proc.kill()
    process.wait()


@pytest.mark.slow
@pytest.mark.distributed
def test_killed_deepspeed_training_resumes_on_as_many_ranks(untrained_tiny, tmp_path):
    pytest.importorskip("deepspeed")

    def launch(out: Path, ranks: int = 2) -> subprocess.Popen:
        code = DEEPSPEED_TRAIN.format(
            tests=str(Path(__file__).parent),
            steps=8,
            save_every=2,
            model=str(untrained_tiny),
            out=str(out),
            ranks=ranks,
        )
        return subprocess.Popen(
            [sys.executable, "-c", code],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )

    whole = launch(tmp_path / "whole")
    assert whole.wait() == 0, whole.stderr.read().decode()[-3000:]
    out = tmp_path / "model"
    state = resume_dir(out.with_name("model.tmp")) / "state.json"
    child = launch(out)
    deadline = time.monotonic() + 600
    while not (state.exists() and json.loads(state.read_text())["step"] >= 4) and time.monotonic() < deadline:
        assert child.poll() is None, child.stderr.read().decode()[-3000:]
        time.sleep(0.05)
    kill_everything(child)

    fewer = launch(out, ranks=1)
    assert fewer.wait() != 0
    assert "was saved by 2 ranks and this run has 1" in fewer.stderr.read().decode()
    rerun = launch(out)
    assert rerun.wait() == 0, rerun.stderr.read().decode()[-3000:]
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["resumed_from_step"] >= 4 and summary["steps"] == 8
    assert [json.loads(line)["step"] for line in (out / "train_log.jsonl").read_text().splitlines()] == list(
        range(1, 9)
    )
    from safetensors.torch import load_file

    resumed, uninterrupted = load_file(out / "model.safetensors"), load_file(tmp_path / "whole/model.safetensors")
    assert all(torch.allclose(resumed[k], uninterrupted[k], rtol=0, atol=1e-6) for k in uninterrupted)
    assert not resume_dir(out).exists()
