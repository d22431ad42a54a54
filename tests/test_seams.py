"""The seams of irpo/protocols.py: every registered backend satisfies its Protocol and checks its own config
section; a Scorer scores a model in the trainer's memory and its saved copy alike; the training stage tells
the tracker which log to follow, and it is the log the trainer writes while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import arithmetic_pairs
from omegaconf import OmegaConf

from irpo.config import (
    ClusterConfig,
    GenerationConfig,
    HFSamplerConfig,
    LossConfig,
    ModelConfig,
    SamplerConfig,
    TorchTrainerConfig,
    TrainerConfig,
    validate,
)
from irpo.evaluate import HeldOutScorer
from irpo.protocols import Checkpoint, ChecksConfig, Scorer, Tracker, Trainer
from irpo.rundir import RunDir
from irpo.sampling.hf import HFSampler
from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig
from irpo.tasks.base import Example
from irpo.tracking import TRACKERS
from irpo.train import watched_train_log
from irpo.training import TRAINERS, build_trainer
from irpo.training.workdir import TRAIN_LOG

MODEL = OmegaConf.structured(ModelConfig(name="tiny"))


@pytest.mark.parametrize("name", TRAINERS.names())
def test_every_registered_trainer_is_a_trainer_that_checks_its_own_section(name):
    trainer_cfg = OmegaConf.structured(TrainerConfig(name=name))
    assert isinstance(TRAINERS.get(name)(trainer_cfg, MODEL, OmegaConf.structured(ClusterConfig())), Trainer)
    assert isinstance(TRAINERS.get(name), ChecksConfig)


def test_trackers_and_the_held_out_scorer_meet_their_protocols(make_config, tmp_path):
    assert isinstance(TRACKERS.get("none")(make_config(), RunDir(tmp_path / "run")), Tracker)
    assert isinstance(TRACKERS.get("wandb"), ChecksConfig)
    assert isinstance(HeldOutScorer([], {}, None, None, GenerationConfig(), seed=0), Scorer)


def test_each_backend_checks_its_own_section(make_config):
    with pytest.raises(ValueError, match=r"trainer.deepspeed.zero_stage must be 0, 1, 2 or 3, not 4"):
        validate(make_config("trainer=deepspeed", "trainer.deepspeed.zero_stage=4"))
    with pytest.raises(ValueError, match=r"trainer.deepspeed.bf16 must be auto, true or false, not 'yes'"):
        validate(make_config("trainer=deepspeed", "trainer.deepspeed.bf16=yes"))
    with pytest.raises(ValueError, match=r"trainer.torch.device must be auto or a torch device .* not 'gpu0'"):
        validate(make_config("trainer.torch.device=gpu0"))
    # A section belongs to its backend: the torch trainer does not read trainer.deepspeed.* (nor the reverse).
    validate(make_config("trainer.deepspeed.zero_stage=4"))
    validate(make_config("trainer=deepspeed", "trainer.torch.device=gpu0"))
    with pytest.raises(FileNotFoundError, match=r"sampler.vllm.python=/no/such/python: no such interpreter"):
        validate(make_config("sampler=vllm", "sampler.vllm.python=/no/such/python"))


def test_a_checkpoint_is_saved_or_in_memory_never_both_nor_neither(tmp_path):
    for bad in ({}, {"model_dir": tmp_path, "model": object(), "tokenizer": object()}, {"model": object()}):
        with pytest.raises(ValueError, match="either saved"):
            Checkpoint(1, **bad)


class WatchingScorer:
    """Scores as the loop's scorer does, and notes how many steps the trainer's live log held at each call."""

    def __init__(self, scorer: HeldOutScorer, live_log: Path):
        self.scorer, self.live_log, self.logged_steps, self.scores = scorer, live_log, [], {}

    def score(self, checkpoint: Checkpoint) -> float:
        self.logged_steps.append(len(self.live_log.read_text().splitlines()))
        self.scores[checkpoint.step] = self.scorer.score(checkpoint)
        return self.scores[checkpoint.step]


@pytest.mark.slow
def test_a_live_model_and_its_saved_copy_score_alike_and_the_tracker_is_told_the_live_log(untrained_tiny, tmp_path):
    """The tiny model learns to answer every question "Final answer: 7" (SFT); held-out questions whose gold
    answer is 7 count as right and those whose gold is 8 as wrong, so the scores are neither all 0 nor all 1."""
    prompts = [p["prompt"] for p in arithmetic_pairs(8, seed=9)]
    held_out = [Example(f"q{i}", p, "7" if i % 2 else "8") for i, p in enumerate(prompts)]
    sampler = HFSampler(OmegaConf.structured(SamplerConfig(hf=HFSamplerConfig(device="cpu"))), MODEL)
    task = ArithmeticTask(ArithmeticTaskConfig())
    scorer = HeldOutScorer(held_out, {e.id: e.question for e in held_out}, sampler, task, GenerationConfig(), seed=0)
    it = RunDir(tmp_path / "run").iteration(1)
    watching = WatchingScorer(scorer, watched_train_log(it))
    trainer_cfg = TrainerConfig(lr=3e-3, batch_size=8, micro_batch_size=8, max_steps=40, eval_every=10, save_every=0)
    trainer_cfg.torch = TorchTrainerConfig(device="cpu")
    sevens = [{"prompt": p["prompt"], "chosen": " Final answer: 7"} for p in arithmetic_pairs(16)]
    summary = build_trainer(OmegaConf.structured(trainer_cfg), MODEL, OmegaConf.structured(ClusterConfig())).train(
        untrained_tiny, sevens, it.model, OmegaConf.structured(LossConfig(name="sft")), seed=0, scorer=watching
    )
    assert watching.logged_steps == [9, 19, 29, 39]  # the log the tracker follows, filled as training runs
    assert (it.model / TRAIN_LOG).exists() and not watched_train_log(it).exists()  # published, then gone
    assert summary["held_out_accuracy"] == watching.scores and watching.scores[40] == 0.5
    # The published weights are the selected step's: scored again from disk, they score what they did live.
    assert scorer.score(Checkpoint(summary["selected_step"], model_dir=it.model)) == 0.5
