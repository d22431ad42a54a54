"""The paper's protocol at the level of single parts: the step budget across passes over the pairs,
truncated samples flagged by the sampler, and checkpoint scoring that leaves the trainer's RNG alone."""

from __future__ import annotations

import json
from collections import Counter
from types import SimpleNamespace

import pytest
import torch
from conftest import arithmetic_pairs
from omegaconf import OmegaConf

from irpo.config import (
    ClusterConfig,
    HFSamplerConfig,
    LossConfig,
    ModelConfig,
    SamplerConfig,
    TorchTrainerConfig,
    TrainerConfig,
)
from irpo.models.loading import load_model, load_tokenizer
from irpo.protocols import Checkpoint
from irpo.sampling import SamplingRequest, sample_all
from irpo.sampling.hf import HFSampler, ended_by_model
from irpo.tasks.answer_line import AnswerLine
from irpo.training import build_trainer
from irpo.training.batches import step_batches, total_steps


def budget(**overrides):
    return SimpleNamespace(**{"max_steps": 5000, "epochs": None, "batch_size": 16, **overrides})


def test_the_step_budget_not_one_pass_bounds_training():
    assert total_steps(budget(), num_pairs=160, max_steps=None) == 5000  # the paper: up to 5000 steps
    assert total_steps(budget(epochs=1.0), num_pairs=160, max_steps=None) == 10  # an explicit epoch cap
    assert total_steps(budget(epochs=1.0, max_steps=4), num_pairs=160, max_steps=None) == 4
    assert total_steps(budget(), num_pairs=160, max_steps=37) == 37  # a retrain for the selected steps


def test_passes_over_the_pairs_are_whole_seeded_shuffles():
    order = step_batches(num_pairs=10, batch_size=4, steps=9, seed=3)  # 36 draws: 3 passes and 6 more
    flat = [i for batch in order for i in batch]
    for p in range(3):
        assert sorted(flat[10 * p : 10 * (p + 1)]) == list(range(10))  # each pass sees every pair once
    assert max(Counter(flat).values()) - min(Counter(flat).values()) <= 1
    assert order == step_batches(num_pairs=10, batch_size=4, steps=9, seed=3)
    assert order != step_batches(num_pairs=10, batch_size=4, steps=9, seed=4)


def test_trainer_runs_the_whole_budget_over_few_pairs(untrained_tiny, tmp_path):
    cfg = OmegaConf.structured(
        TrainerConfig(lr=1e-3, batch_size=4, micro_batch_size=4, max_steps=7, torch=TorchTrainerConfig(device="cpu"))
    )
    trainer = build_trainer(cfg, OmegaConf.structured(ModelConfig(name="tiny")), OmegaConf.structured(ClusterConfig()))
    summary = trainer.train(
        untrained_tiny, arithmetic_pairs(5), tmp_path / "out", OmegaConf.structured(LossConfig()), seed=0
    )
    log = [json.loads(line) for line in (tmp_path / "out/train_log.jsonl").read_text().splitlines()]
    assert summary["steps"] == 7 and [e["step"] for e in log] == list(range(1, 8))  # 28 draws of 5 pairs


@pytest.mark.parametrize(
    "text,ids,expected",
    [
        ("2 + 3 = 5\nFinal answer: 5", [1, 2, 0], True),  # an end token (EOS, or padding after a stop) in the row
        ("2 + 3 = 5\nFinal answer: 5\n", [1, 2, 3], True),  # the answer line is finished
        ("2 + 3 = 5\nFinal answer: 5", [1, 2, 3], False),  # the budget ran out on the answer line: 5 or 50?
        ("2 + 3 = 5\nFinal answer:\n", [1, 2, 3], False),  # ...or before the answer, which may come next line
        ("2 + 3 = 5\nFinal answer:\n5\n", [1, 2, 3], True),
        ("2 + 3 = 5\n3 + 4", [1, 2, 3], False),  # the budget ran out mid-solution
        ("x\nEND", [1, 2, 3], True),  # a stop string
        ("", [1, 2, 3], False),
    ],
)
def test_what_counts_as_ended_by_the_model(text, ids, expected):
    assert ended_by_model(text, ids, end_ids={0}, rule=AnswerLine("Final answer:"), stop=("END",)) == expected


def test_hf_sampler_flags_samples_cut_off_by_the_token_budget(untrained_tiny):
    sampler = HFSampler(
        OmegaConf.structured(SamplerConfig(hf=HFSamplerConfig(device="cpu"))),
        OmegaConf.structured(ModelConfig(name="tiny")),
    )
    prompts = ["Question: Mia has 3 apples. She buys 2 more.\nSolution:", "Question: 1 + 1?\nSolution:"]
    cut, roomy = (
        sample_all(
            sampler,
            untrained_tiny,
            prompts,
            [SamplingRequest(4, 1.0, 1.0, max_new_tokens=budget, seed=0, stop_rule=AnswerLine("Final answer:"))],
        )[0]
        for budget in (3, 40)
    )
    stats = roomy.stats
    cut, roomy = cut.completions, roomy.completions
    # An untrained model rarely ends a sample within 3 tokens (at most a character each): most are cut off,
    # and one that was not ended early, on an end token.
    assert sum(c.truncated for row in cut for c in row) >= 6
    assert all(len(c.text) < 3 for row in cut for c in row if not c.truncated)
    assert all(len(c.text) <= 40 for row in roomy for c in row)
    assert all(len(c.text) < 40 for row in roomy for c in row if not c.truncated)
    assert stats.truncated == sum(c.truncated for row in roomy for c in row) and stats.backend == "hf"


def test_scoring_a_checkpoint_leaves_the_trainers_random_stream_alone(untrained_tiny):
    sampler = HFSampler(
        OmegaConf.structured(SamplerConfig(hf=HFSamplerConfig(device="cpu"))),
        OmegaConf.structured(ModelConfig(name="tiny")),
    )
    model, tokenizer = load_model(untrained_tiny, "float32", "cpu"), load_tokenizer(untrained_tiny)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    sampler.sample_loaded(model, tokenizer, ["Question: 1 + 1?\nSolution:"], SamplingRequest(2, 1.0, 1.0, 4, seed=9))
    assert torch.equal(torch.rand(3), expected)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU: the CUDA generator is the one at stake")
def test_scoring_a_checkpoint_on_a_gpu_leaves_the_trainers_cuda_random_stream_alone(untrained_tiny):
    """torch.manual_seed inside sampling seeds every CUDA generator too; forking only the CPU one (as before)
    reset the trainer's GPU dropout stream at each checkpoint score."""
    sampler = HFSampler(
        OmegaConf.structured(SamplerConfig(hf=HFSamplerConfig(device="cuda"))),
        OmegaConf.structured(ModelConfig(name="tiny")),
    )
    model, tokenizer = load_model(untrained_tiny, "float32", "cuda"), load_tokenizer(untrained_tiny)
    torch.cuda.manual_seed(123)
    expected = torch.rand(3, device="cuda")
    torch.cuda.manual_seed(123)
    sampler.sample_loaded(model, tokenizer, ["Question: 1 + 1?\nSolution:"], SamplingRequest(2, 1.0, 1.0, 4, seed=9))
    assert torch.equal(torch.rand(3, device="cuda"), expected)


def test_selection_keeps_the_best_scoring_steps_weights(untrained_tiny, tmp_path):
    from safetensors.torch import load_file

    held_out_scores, snapshots = iter([0.1, 0.5, 0.3, 0.5]), []

    class ScriptedScorer:  # the held-out accuracy each evaluated step gets, scripted
        def score(self, checkpoint: Checkpoint) -> float:
            snapshots.append({k: v.detach().clone() for k, v in checkpoint.model.state_dict().items()})
            return next(held_out_scores)

    cfg = OmegaConf.structured(
        TrainerConfig(
            lr=1e-3,
            batch_size=4,
            micro_batch_size=4,
            max_steps=4,
            eval_every=1,
            save_every=0,
            torch=TorchTrainerConfig(device="cpu"),
        )
    )
    trainer = build_trainer(cfg, OmegaConf.structured(ModelConfig(name="tiny")), OmegaConf.structured(ClusterConfig()))
    summary = trainer.train(
        untrained_tiny,
        arithmetic_pairs(8),
        tmp_path / "out",
        OmegaConf.structured(LossConfig()),
        seed=0,
        scorer=ScriptedScorer(),
    )
    assert summary["selected_step"] == 2  # the best score; step 4 ties it, and a tie keeps the earlier step
    assert summary["held_out_accuracy"] == {1: 0.1, 2: 0.5, 3: 0.3, 4: 0.5}
    saved = load_file(str(tmp_path / "out/model.safetensors"))
    assert all(torch.equal(saved[k], snapshots[1][k]) for k in saved)
    assert not all(torch.equal(saved[k], snapshots[3][k]) for k in saved)


def test_shared_prefill_draws_what_the_reference_path_draws(untrained_tiny):
    """Each prompt run once and its cache copied to its N samples: the same positions under left padding, the
    same random stream, so the same samples as running every copy of the prompt (here, to the character)."""
    prompts = ["Question: Mia has 3 apples. She buys 2 more.\nSolution:", "Question: 1 + 1?\nSolution:"]
    request = SamplingRequest(4, 1.0, 1.0, max_new_tokens=12, seed=5)
    drawn = []
    for shared in (False, True):
        sampler = HFSampler(
            OmegaConf.structured(SamplerConfig(hf=HFSamplerConfig(device="cpu", shared_prefill=shared))),
            OmegaConf.structured(ModelConfig(name="tiny")),
        )
        drawn.append(sample_all(sampler, untrained_tiny, prompts, [request])[0])
    reference, shared = drawn
    assert shared.completions == reference.completions
    assert len({c.text for c in reference.completions[0]}) == 4  # four different samples, not one repeated
