"""The seams of irpo/protocols.py, by what they do: every registered trainer, sampler and tracker behaves as its
Protocol says, called only through it, and checks its own config section; a Scorer scores a model in the
trainer's memory and its saved copy alike; the training stage tells the tracker which log to follow, and it is
the log the trainer writes while it runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import arithmetic_pairs
from omegaconf import OmegaConf
from safetensors.torch import load_file

from irpo.config import (
    ClusterConfig,
    DeepSpeedTrainerConfig,
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
from irpo.files import read_json, read_log, write_json
from irpo.models.loading import load_model, load_tokenizer
from irpo.protocols import Checkpoint, PromptShard, Sampler, SamplingRequest, Scorer, Trainer
from irpo.rundir import RunDir
from irpo.sampling import SAMPLERS, build_sampler, sample_all
from irpo.sampling.hf import HFSampler
from irpo.stage_context import StageContext
from irpo.tasks.answer_line import AnswerLine
from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig
from irpo.tasks.base import FINAL_ANSWER, Example
from irpo.tracking import TRACKERS, build_tracker
from irpo.train import watched_train_log
from irpo.training import TRAINERS, build_trainer
from irpo.training.workdir import TRAIN_LOG, work_dir

MODEL = OmegaConf.structured(ModelConfig(name="tiny"))
CLUSTER = OmegaConf.structured(ClusterConfig())
LOSS = OmegaConf.structured(LossConfig())


FINAL = AnswerLine(FINAL_ANSWER)
PROMPTS = [f"Question: What is {a} + {a + 4}?\nSolution:" for a in range(5)]


def trainer_section(name: str) -> TrainerConfig:
    """Three steps of 4 pairs on the CPU, in float32 (DeepSpeed's CPU ranks have no autocast), on one rank."""
    return TrainerConfig(
        name=name,
        lr=1e-3,
        batch_size=4,
        micro_batch_size=2,
        max_steps=3,
        save_every=0,
        torch=TorchTrainerConfig(device="cpu", mixed_precision="none"),
        deepspeed=DeepSpeedTrainerConfig(num_processes=1),
    )


@pytest.mark.parametrize(
    "name",
    [
        name if name == "torch" else pytest.param(name, marks=[pytest.mark.slow, pytest.mark.distributed])
        for name in TRAINERS.names()
    ],
)
def test_every_registered_trainer_trains_and_publishes_through_the_protocol(name, untrained_tiny, tmp_path):
    """`Trainer.train`: M_t published as a model directory that loads, its summary returned and written, one log row
    per step, nothing left of the work dir; the same seed, the same weights."""
    trainer: Trainer = build_trainer(OmegaConf.structured(trainer_section(name)), MODEL, CLUSTER)
    outputs = []
    for attempt in ("a", "b"):
        output = tmp_path / attempt / "model"
        summary = trainer.train(untrained_tiny, arithmetic_pairs(8), output, LOSS, seed=5, desc=f"{name} {attempt}")
        assert summary == read_json(output / "train_summary.json")
        assert (summary["steps"], summary["pairs"], summary["trainer"]) == (3, 8, name)
        assert [row["step"] for row in read_log(output / TRAIN_LOG)] == [1, 2, 3]
        assert not work_dir(output).exists() and load_model(output) is not None
        outputs.append(load_file(str(output / "model.safetensors")))
    before = load_file(str(untrained_tiny / "model.safetensors"))
    assert any(not torch.equal(outputs[0][k], before[k]) for k in before)  # it trained
    assert all(torch.equal(outputs[0][k], outputs[1][k]) for k in before)  # deterministically


@pytest.mark.parametrize("name", [n for n in SAMPLERS.names() if n != "vllm"])  # vllm: test_resume_sampling.py
def test_every_registered_sampler_draws_through_the_protocol(name, untrained_tiny):
    """`Sampler.sample`: a `Samples` per shard and request, N completions a prompt, seeded by the prompt's index
    (however the prompts are split into shards); `sample_loaded`: the same greedy answers from a model in
    memory, the caller's random stream untouched; `close`: twice is fine, and the sampler works after."""
    sampler: Sampler = build_sampler(
        OmegaConf.structured(SamplerConfig(name=name, hf=HFSamplerConfig(device="cpu"))), MODEL
    )
    sampled = SamplingRequest(3, 1.0, 1.0, max_new_tokens=6, seed=4, stop_rule=FINAL)
    greedy = SamplingRequest(1, 0.0, 1.0, max_new_tokens=6, seed=4, stop_rule=FINAL)
    ((whole_sampled, whole_greedy),) = sampler.sample(untrained_tiny, [PromptShard(0, PROMPTS)], [sampled, greedy])
    assert [len(row) for row in whole_sampled.completions] == [3] * len(PROMPTS)
    assert whole_sampled.stats.sequences == 3 * len(PROMPTS) and whole_sampled.stats.backend == "hf"
    assert len({c.text for row in whole_sampled.completions for c in row}) > 1
    split = list(sampler.sample(untrained_tiny, [PromptShard(0, PROMPTS[:2]), PromptShard(2, PROMPTS[2:])], [sampled]))
    assert [row for (shard,) in split for row in shard.completions] == whole_sampled.completions

    model, tokenizer = load_model(untrained_tiny), load_tokenizer(untrained_tiny)
    torch.manual_seed(1)
    expected = torch.rand(2)
    torch.manual_seed(1)
    loaded = sampler.sample_loaded(model, tokenizer, PROMPTS, greedy)
    assert torch.equal(torch.rand(2), expected) and loaded.completions == whole_greedy.completions
    sampler.close()
    sampler.close()
    assert sample_all(sampler, untrained_tiny, PROMPTS, [greedy])[0].completions == whole_greedy.completions


class FirstCharacter(ArithmeticTask):
    """An untrained model never writes "Final answer: N"; its first character is an answer it does give."""

    def extract_answer(self, example: Example, completion: str) -> str | None:
        return completion.strip()[:1] or None

    def is_correct(self, example: Example, answer: str | None) -> bool:
        return answer == example.gold_answer


def test_the_held_out_scorer_scores_a_live_model_and_its_saved_copy_alike(untrained_tiny):
    """`Scorer.score`: the share of held-out questions whose greedy answer is right, the same for weights in memory
    and on disk. The gold answers are the untrained model's own first greedy characters for half the questions."""
    task = FirstCharacter(ArithmeticTaskConfig())
    sampler = HFSampler(OmegaConf.structured(SamplerConfig(hf=HFSamplerConfig(device="cpu"))), MODEL)
    generation = OmegaConf.structured(GenerationConfig(max_new_tokens=4))
    prompts = {f"q{i}": p for i, p in enumerate(PROMPTS[:4])}
    ctx = StageContext(task, prompts, sampler, generation, shard_prompts=4, seed=0, fits=lambda p, r: True)
    (drawn,) = sample_all(sampler, untrained_tiny, list(prompts.values()), [ctx.greedy_request(0)])
    firsts = [row[0].text.strip()[:1] for row in drawn.completions]
    golds = [first if i % 2 else "\n" for i, first in enumerate(firsts)]  # no first character is a newline
    held_out = [Example(q, p, gold) for (q, p), gold in zip(prompts.items(), golds, strict=True)]
    scorer: Scorer = HeldOutScorer(held_out, ctx)
    live = Checkpoint(3, model=load_model(untrained_tiny), tokenizer=load_tokenizer(untrained_tiny))
    assert scorer.score(Checkpoint(3, model_dir=untrained_tiny)) == scorer.score(live) == 0.5


@pytest.mark.parametrize("name", TRACKERS.names())
def test_every_registered_tracker_logs_a_finished_iteration_once(name, make_config, tmp_path, monkeypatch):
    """`Tracker`: a context manager around the run, a watch around training, and each finished iteration logged
    once (logger=wandb records that in wandb_state.json; logger=none writes nothing)."""
    monkeypatch.setenv("WANDB_SILENT", "true")
    run_dir = RunDir(tmp_path / "run").create()
    it = run_dir.iteration(1).create()
    write_json(it.metrics, {"iteration": 1, "eval": {"greedy_accuracy": 0.5}})
    with build_tracker(make_config(f"logger={name}", "logger.mode=disabled"), run_dir) as tracker:
        with tracker.watch_training(it, it.path / TRAIN_LOG):
            pass
        tracker.log_iteration(it)
        tracker.log_iteration(it)  # again: a no-op
        tracker.log_iteration(run_dir.iteration(2))  # unfinished: nothing to log
    written = sorted(p.name for p in run_dir.root.iterdir() if p.name != "iter_1")
    if name == "none":
        assert written == []
    else:
        assert read_json(run_dir.root / "wandb_state.json")["logged_iterations"] == [1]


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
    generation = OmegaConf.structured(GenerationConfig())
    prompts = {e.id: e.question for e in held_out}
    scorer = HeldOutScorer(held_out, StageContext(task, prompts, sampler, generation, 256, 0, lambda p, r: True))
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
