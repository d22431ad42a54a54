"""sampler=vllm: the translation from irpo's config to vLLM's arguments, and (where vLLM is installed)
real sampling of the tiny model through vLLM's engine in a child process."""

from __future__ import annotations

import importlib.util
import os
import sys

import pytest
from omegaconf import OmegaConf

from irpo.config import GenerationConfig, ModelConfig, SamplerConfig, VLLMSamplerConfig
from irpo.sampling import Completion, SamplingRequest, build_sampler, sample_all
from irpo.sampling.vllm_sampler import completions_from_worker, engine_args, sampling_args
from irpo.tasks.answer_line import AnswerLine

FINAL = AnswerLine("Final answer:")  # the tasks' stop rule


def configs(**sampler):
    return (
        OmegaConf.structured(SamplerConfig(name="vllm", vllm=VLLMSamplerConfig(**sampler))),
        OmegaConf.structured(ModelConfig(name="m", name_or_path="/m", dtype="bfloat16", max_length=1024)),
    )


def test_engine_arguments_default_to_the_model_config():
    sampler_cfg, model_cfg = configs(tensor_parallel_size=8, gpu_memory_utilization=0.5)
    args = engine_args(sampler_cfg.vllm, model_cfg, "/runs/x/iter_1/model")
    assert args["model"] == args["tokenizer"] == "/runs/x/iter_1/model"
    assert (args["dtype"], args["max_model_len"]) == ("bfloat16", 1024)
    assert (args["tensor_parallel_size"], args["gpu_memory_utilization"]) == (8, 0.5)
    assert args["enable_chunked_prefill"] is None  # the worker decides by platform (off on CPUs)
    assert args["enable_prefix_caching"]  # a prompt's N samples share its prefill
    sampler_cfg, model_cfg = configs(dtype="float16", max_model_len=4096)
    args = engine_args(sampler_cfg.vllm, model_cfg, "/m")
    assert (args["dtype"], args["max_model_len"]) == ("float16", 4096)


def test_sampling_arguments_carry_the_shared_generation_settings():
    request = SamplingRequest(
        num_samples=30, temperature=0.8, top_p=0.95, max_new_tokens=512, seed=7, stop=("\n\nProblem:",)
    )
    args = sampling_args(request, prompt_index=3, prompt_tokens=100, max_model_len=1024)
    assert (args["n"], args["temperature"], args["top_p"], args["max_tokens"]) == (30, 0.8, 0.95, 512)
    assert args["stop"] == ["\n\nProblem:"] and args["include_stop_str_in_output"]
    # Seeds: a function of (request seed, prompt), so a prompt's samples do not depend on its batch.
    assert args["seed"] == sampling_args(request, 3, 5, 1024)["seed"]
    assert len({sampling_args(request, i, 100, 1024)["seed"] for i in range(100)}) == 100
    # The context caps the budget; greedy decoding ignores top_p.
    assert sampling_args(request, 0, prompt_tokens=900, max_model_len=1024)["max_tokens"] == 124
    greedy = sampling_args(SamplingRequest(1, 0.0, 0.9, 64, seed=0), 0, 10, 1024)
    assert (greedy["n"], greedy["temperature"], greedy["top_p"]) == (1, 0.0, 1.0)


def torch_cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def vllm_python() -> str | None:
    """IRPO_VLLM_PYTHON (an interpreter whose environment has vLLM), or this one if it has vLLM."""
    if os.environ.get("IRPO_VLLM_PYTHON"):
        return os.environ["IRPO_VLLM_PYTHON"]
    return sys.executable if importlib.util.find_spec("vllm") else None


@pytest.mark.vllm
@pytest.mark.skipif(
    vllm_python() is None,
    reason="vLLM is not installed here; set IRPO_VLLM_PYTHON to an interpreter "
    "that has it (docs/scaling.md) to run this test",
)
def test_vllm_samples_the_tiny_model_repeatably(untrained_tiny):
    sampler_cfg, _ = configs(python=vllm_python(), gpu_memory_utilization=0.3)
    model_cfg = OmegaConf.structured(ModelConfig(name="tiny", max_length=512))
    sampler = build_sampler(sampler_cfg, model_cfg)
    # 40 prompts of ~300 tokens overflow one scheduler step, so prefills are split across steps.
    prompts = ["Question: What is 1 + 2?\nAnswer:", "Question: What is 30 + 4?\nAnswer:", "9" * 600] + [
        f"{i} " * 150 for i in range(40)
    ]
    requests = [
        SamplingRequest(4, 1.0, 1.0, 24, seed=5, stop_rule=FINAL),
        SamplingRequest(4, 1.0, 1.0, 24, seed=6, stop_rule=FINAL),
        SamplingRequest(1, 0.0, 1.0, 24, seed=5, stop_rule=FINAL),
    ]
    with sampler:
        first = sample_all(sampler, untrained_tiny, prompts, requests)
    stats = first[0].stats
    with sampler:
        again = sample_all(sampler, untrained_tiny, prompts, requests[:1])[0].completions

    sampled, other_seed, greedy = (s.completions for s in first)
    assert [len(s) for s in sampled] == [4] * 43 and [len(s) for s in greedy] == [1] * 43
    assert all(c.text for c in sampled[0] + sampled[1])
    assert sampled[2] == [Completion("", truncated=True)] * 4  # the over-long prompt: no room to answer
    assert again == sampled  # same seed, fresh engine: the same samples
    assert other_seed[:2] != sampled[:2]
    assert len({c.text for c in sampled[0]}) > 1  # n samples of one prompt differ from each other
    # An untrained model rarely ends within 24 tokens: vLLM's finish_reason "length" marks those cut off.
    assert sum(c.truncated for row in sampled for c in row) > len(prompts)
    assert stats.prompts_too_long == 1 and stats.sequences == 42 * 4 and stats.new_tokens > 0
    assert (stats.backend, stats.engine_starts, first[1].stats.engine_starts) == ("vllm", 1, 0)


@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(
    vllm_python() is None,
    reason="vLLM is not installed here; set IRPO_VLLM_PYTHON to an interpreter "
    "that has it (docs/scaling.md) to run this test",
)
def test_loop_runs_an_iteration_with_sampler_vllm(make_config, tmp_path):
    from irpo.files import read_json, read_jsonl
    from irpo.loop import run

    cfg = make_config(
        "experiment=smoke",
        "iterations=1",
        "sampler=vllm",
        f"sampler.vllm.python={vllm_python()}",
        "sampler.vllm.gpu_memory_utilization=0.3",
    )
    rows = run(cfg)
    assert [r["iteration"] for r in rows] == [0, 1]
    generations = read_jsonl(tmp_path / "run" / "iter_1" / "generations.jsonl")
    # Retraining with the held-out questions samples them too (experiment=smoke selects on all of them).
    held_out = cfg.task.num_valid if cfg.trainer.retrain_with_heldout else 0
    assert len(generations) == cfg.task.num_train + held_out
    assert all(len(g["samples"]) == cfg.generation.num_samples for g in generations)
    stats = read_json(tmp_path / "run" / "iter_1" / "generation_stats.json")
    assert stats["engine_start_seconds"] == 0 and stats["engine_starts"] == 0  # M0's evaluation started it
    assert stats["backend"] == "vllm" and stats["sequences"] == len(generations) * cfg.generation.num_samples


def test_worker_output_becomes_completions_with_hf_truncation_rule():
    """vLLM reports finish_reason "length" for any sample that ran to max_tokens; one that finished its answer
    line before that is not cut off (hf would have stopped it there), one without an answer line is; and its
    text ends where hf's would, at the end of the answer line."""
    result = {
        "completions": [[["2 + 3 = 5\nFinal answer: 5\nQuestion: next one", "2 + 3 = 5\n3 +", "5\nFinal answer: 5"]]],
        "truncated": [[[True, True, False]]],
    }
    request = SamplingRequest(3, 1.0, 1.0, 16, seed=0, stop_rule=FINAL)
    ((kept, too_long),) = completions_from_worker(result, [request], fits=[True, False])
    assert [c.truncated for c in kept] == [False, True, False]
    assert [c.text for c in kept] == ["2 + 3 = 5\nFinal answer: 5\n", "2 + 3 = 5\n3 +", "5\nFinal answer: 5"]
    assert too_long == [Completion("", truncated=True)] * 3


def test_both_backends_end_a_sample_at_the_same_point():
    """The first point where the answer line is finished: what hf's stopping rule sees, token by token."""

    cases = {
        "2 + 3 = 5\nFinal answer: 5\nQuestion: next": "2 + 3 = 5\nFinal answer: 5\n",
        "Final answer:\n\n 40\nmore": "Final answer:\n\n 40\n",  # the answer may come on a later line
        "final ANSWER: 7\n": "final ANSWER: 7\n",
        "Final answer: Final answer: 3\nx": "Final answer: Final answer: 3\n",
        "Final answer:\nFinal answer: 4\nx": "Final answer:\nFinal answer: 4\n",
        "no answer here\n": "no answer here\n",
        "Final answer: 5": "Final answer: 5",  # not finished: kept whole
    }
    for text, expected in cases.items():
        assert FINAL.cut(text) == expected, text
        first = next((i for i in range(len(text) + 1) if FINAL.finished(text[:i])), None)
        assert (first is None and expected == text) or text[:first] == expected, text


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is installed in this interpreter")
def test_sampler_auto_falls_back_to_hf_and_records_it(untrained_tiny, tmp_path, caplog):
    from irpo.files import read_json
    from irpo.generate import generate
    from irpo.rundir import IterationDir
    from irpo.stage_context import StageContext
    from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig

    sampler = build_sampler(
        OmegaConf.structured(SamplerConfig(name="auto")), OmegaConf.structured(ModelConfig(name="tiny"))
    )
    task = ArithmeticTask(ArithmeticTaskConfig(num_train=4, num_valid=1, num_test=1, num_seed_sft=4))
    prompts = {e.id: task.prompt(e) for e in task.load_splits().train}
    generation = OmegaConf.structured(GenerationConfig(num_samples=2, temperatures=[1.0], max_new_tokens=8))
    ctx = StageContext(task, prompts, sampler, generation, shard_prompts=2, seed=0, fits=lambda p, r: True)
    with caplog.at_level("INFO"):
        rows = generate(IterationDir(tmp_path, 1), untrained_tiny, list(prompts), ctx)
    assert len(rows) == 4 and sampler.name == "hf"
    assert "sampler=auto: using hf (vLLM is not installed)" in caplog.text
    stats = read_json(tmp_path / "generation_stats.json")
    assert (stats["backend"], stats["sequences"], stats["shards"]) == ("hf", 8, 2)


@pytest.mark.skipif(torch_cuda_available(), reason="the rule below is the CPU's")
def test_sampler_auto_keeps_the_sampling_loop_on_a_cpu(monkeypatch):
    """On a CPU the sampling loop measured faster than vLLM's CPU build, on SmolLM2-135M (540 MB) as on the
    tiny model: with vLLM installed, a CPU still gets hf."""
    from irpo.sampling import auto

    monkeypatch.setattr(auto, "has_vllm", lambda vllm_cfg: True)
    name, why = auto.pick_backend(OmegaConf.structured(SamplerConfig(name="auto")))
    assert name == "hf" and "on a CPU irpo's sampling loop measured faster" in why
