"""Trainers: trainer=deepspeed's generated config and launch command, a real 2-rank ZeRO run on the CPU
that must reproduce trainer=torch's losses and weights on the same pairs and seed, and gradient
checkpointing, which must not change what is learned."""

from __future__ import annotations

import dataclasses
import importlib.util
import json

import pytest
import torch
from conftest import arithmetic_pairs
from omegaconf import OmegaConf
from safetensors.torch import load_file

from irpo.config import (
    ClusterConfig,
    DeepSpeedTrainerConfig,
    LoraConfig,
    LossConfig,
    ModelConfig,
    TorchTrainerConfig,
    TrainerConfig,
)
from irpo.models.loading import load_model, load_tokenizer
from irpo.training import build_trainer
from irpo.training.deepspeed_trainer import deepspeed_config, launch_command

DEEPSPEED_KEYS = {f.name for f in dataclasses.fields(DeepSpeedTrainerConfig)}


def trainer_cfg(**overrides):
    """trainer.* with trainer.deepspeed.* given by name beside them (num_processes=2), on the CPU."""
    deepspeed = {k: overrides.pop(k) for k in DEEPSPEED_KEYS & set(overrides)}
    return OmegaConf.structured(
        TrainerConfig(
            **{"lr": 1e-3, "batch_size": 16, "micro_batch_size": 4, **overrides},
            torch=TorchTrainerConfig(device="cpu", mixed_precision="none"),  # DeepSpeed's fp32, to compare
            deepspeed=DeepSpeedTrainerConfig(**deepspeed),
        )
    )


@pytest.mark.parametrize("ranks, accumulation", [(1, 4), (2, 2), (4, 1)])
def test_effective_batch_is_the_configured_batch_whatever_the_ranks(ranks, accumulation):
    config = deepspeed_config(trainer_cfg(zero_stage=3), world_size=ranks, bf16=False)
    assert config["train_batch_size"] == 16
    assert config["gradient_accumulation_steps"] == accumulation
    assert config["train_micro_batch_size_per_gpu"] * accumulation * ranks == 16
    assert config["zero_optimization"] == {"stage": 3, "stage3_gather_16bit_weights_on_model_save": True}


def test_batch_that_cannot_split_evenly_is_refused():
    with pytest.raises(ValueError, match=r"must be a multiple of trainer.micro_batch_size x ranks \(4 x 3\)"):
        deepspeed_config(trainer_cfg(), world_size=3, bf16=False)


def test_user_json_is_merged_over_the_generated_config(tmp_path):
    extra = tmp_path / "offload.json"
    extra.write_text(json.dumps({"zero_optimization": {"offload_optimizer": {"device": "cpu"}}}))
    config = deepspeed_config(trainer_cfg(zero_stage=2, deepspeed_config=str(extra)), world_size=2, bf16=True)
    assert config["zero_optimization"] == {"stage": 2, "offload_optimizer": {"device": "cpu"}}
    assert config["bf16"] == {"enabled": True}


def test_launch_command_single_node_and_across_slurm_nodes(tmp_path):
    spec = tmp_path / "spec.json"
    one = launch_command(trainer_cfg(num_processes=2), OmegaConf.structured(ClusterConfig()), spec, python="py")
    assert one == [
        "py",
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "irpo.training.deepspeed_worker",
        str(spec),
    ]
    cluster = OmegaConf.structured(ClusterConfig(name="slurm", nodes=4, gpus_per_node=8))
    with pytest.raises(RuntimeError, match="needs a Slurm allocation"):
        launch_command(trainer_cfg(num_processes=8), cluster, spec, env={})
    many = launch_command(
        trainer_cfg(num_processes=8, master_port=29511),
        cluster,
        spec,
        python="py",
        env={"SLURM_JOB_ID": "77", "SLURMD_NODENAME": "gpu001"},
    )
    assert many[:4] == ["srun", "--nodes=4", "--ntasks-per-node=1", "--overlap"]
    assert "--nnodes=4" in many and "--nproc_per_node=8" in many and "--gpus-per-node=8" in many
    assert "--rdzv_endpoint=gpu001:29511" in many and "--rdzv_id=irpo-77" in many


def test_gradient_checkpointing_changes_memory_not_results(untrained_tiny, tmp_path):
    pairs = arithmetic_pairs(16)
    logs = {}
    for flag, policy in ((False, "full"), (True, "full"), (True, "matmuls")):
        trainer = build_trainer(
            trainer_cfg(gradient_checkpointing=flag, checkpoint_policy=policy, max_steps=2, epochs=2.0),
            OmegaConf.structured(ModelConfig(name="tiny")),
            OmegaConf.structured(ClusterConfig()),
        )
        out = tmp_path / f"{flag}-{policy}"
        trainer.train(untrained_tiny, pairs, out, OmegaConf.structured(LossConfig()), seed=1)
        logs[flag, policy] = [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()]
    for plain, full, matmuls in zip(*logs.values(), strict=True):  # recomputation repeats the same arithmetic
        assert plain["loss"] == full["loss"] == matmuls["loss"]
        assert plain["grad_norm"] == full["grad_norm"] == matmuls["grad_norm"]


def uneven_pairs() -> list[dict]:
    """8 arithmetic pairs whose chosen responses run from ~30 to ~120 tokens, so the two NLL normalizations differ."""
    return [{**p, "chosen": p["chosen"] + " ok" * (4 * i)} for i, p in enumerate(arithmetic_pairs(8))]


def train_one_step(model_dir, out, normalization: str, **trainer):
    """(train_summary.json, the step's log row, the saved weights) of one step of 8 pairs."""
    cfg = trainer_cfg(**{"batch_size": 8, "max_steps": 1, **trainer})
    build = build_trainer(cfg, OmegaConf.structured(ModelConfig(name="tiny")), OmegaConf.structured(ClusterConfig()))
    loss = OmegaConf.structured(LossConfig(nll_normalization=normalization))
    summary = build.train(model_dir, uneven_pairs(), out, loss, seed=2)
    return summary, json.loads((out / "train_log.jsonl").read_text()), load_file(out / "model.safetensors")


@pytest.mark.parametrize("normalization", ["sequence", "token"])
def test_a_steps_update_does_not_depend_on_the_micro_batch_under_either_nll_normalization(
    untrained_tiny, tmp_path, normalization
):
    runs = {m: train_one_step(untrained_tiny, tmp_path / str(m), normalization, micro_batch_size=m) for m in (8, 2)}
    (summary, row, weights), (_, split_row, split_weights) = runs[8], runs[2]
    assert summary["nll_normalization"] == normalization
    for key in ("loss", "nll", "chosen_logps", "grad_norm"):
        assert split_row[key] == pytest.approx(row[key], rel=1e-5), key
    for key in weights:  # AdamW's first step moves a weight by ~lr whatever its gradient's size: 1% of lr
        torch.testing.assert_close(split_weights[key], weights[key], atol=1e-5, rtol=1e-4)
    tokenizer = load_tokenizer(untrained_tiny)
    lengths = [len(tokenizer(p["chosen"], add_special_tokens=False)["input_ids"]) + 1 for p in uneven_pairs()]
    if normalization == "token":  # the step's chosen NLL summed, over all its chosen tokens
        assert row["nll"] == pytest.approx(-row["chosen_logps"] * 8 / sum(lengths), rel=1e-5)
    else:
        assert row["nll"] != pytest.approx(-row["chosen_logps"] * 8 / sum(lengths), rel=1e-3)  # 0.6% apart here


needs_deepspeed = pytest.mark.skipif(
    importlib.util.find_spec("deepspeed") is None, reason="deepspeed is not installed (pip install -e '.[deepspeed]')"
)


@needs_deepspeed
@pytest.mark.distributed
@pytest.mark.parametrize("lora_rank", [0, 4], ids=["full", "lora"])
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_two_rank_deepspeed_matches_torch_trainer(untrained_tiny, tmp_path, zero_stage, lora_rank):
    """Full fine-tuning, and LoRA (trainer.lora.rank=4: the ranks train and save adapters, the launcher
    merges them into the weights) under the same tolerances. The ranks take log-probs in chunks of 16 positions
    (the output weight gathered by ZeRO-3 inside the layer's forward and backward) and checkpoint their layers
    (ZeRO-2 keeping the matmuls' outputs, ZeRO-3 whole), the torch trainer takes them from the full logits,
    without checkpointing."""
    if lora_rank:
        pytest.importorskip("peft", reason="peft is not installed (pip install -e '.[lora]')")
    pairs = arithmetic_pairs(48)
    loss = OmegaConf.structured(LossConfig(name="dpo_nll", alpha=1.0, beta=0.1))
    model_cfg = OmegaConf.structured(ModelConfig(name="tiny"))
    cluster = OmegaConf.structured(ClusterConfig())
    runs = {}
    for name in ("torch", "deepspeed"):
        cfg = trainer_cfg(
            name=name,
            logprob_chunk_size=16 if name == "deepspeed" else 0,  # chunked under ZeRO against full logits
            gradient_checkpointing=name == "deepspeed",
            checkpoint_policy="matmuls" if name == "deepspeed" and zero_stage == 2 else "full",
            num_processes=2,
            zero_stage=zero_stage,
            epochs=1.0,
            warmup_steps=1,
            lr_schedule="cosine",
            lora=LoraConfig(rank=lora_rank, save_adapter=True),
        )
        out = tmp_path / name
        summary = build_trainer(cfg, model_cfg, cluster).train(untrained_tiny, pairs, out, loss, seed=3)
        runs[name] = (
            summary,
            [json.loads(line) for line in (out / "train_log.jsonl").read_text().splitlines()],
            load_file(out / "model.safetensors"),
        )

    (torch_summary, torch_log, torch_weights), (ds_summary, ds_log, ds_weights) = runs["torch"], runs["deepspeed"]
    assert ds_summary["steps"] == torch_summary["steps"] == 3 and ds_summary["world_size"] == 2
    assert ds_summary["parameters"] == torch_summary["parameters"]  # ZeRO-3 shards counted at full size
    assert [r["step"] for r in ds_log] == [1, 2, 3]
    for torch_row, ds_row in zip(torch_log, ds_log, strict=True):
        assert set(ds_row) == set(torch_row)  # same keys logged
        # reward_accuracy is a threshold on the margin, which is rounding noise until the policy moves away from
        # the reference (the two trainers lay the reference's forward out differently); the margin itself is
        # compared, to the same tolerance.
        for key in ("loss", "dpo", "nll", "chosen_logps", "rejected_logps", "reward_margin", "lr", "grad_norm"):
            assert ds_row[key] == pytest.approx(torch_row[key], rel=1e-4, abs=1e-5), key
    assert torch_log[-1]["loss"] < torch_log[0]["loss"]  # it trained
    initial = load_file(untrained_tiny / "model.safetensors")
    assert set(ds_weights) == set(torch_weights)
    for key in torch_weights:
        moved = (torch_weights[key] - initial[key]).abs().max()
        assert (ds_weights[key] - torch_weights[key]).abs().max() <= 1e-3 * max(float(moved), 1e-6) + 1e-5, key
    if lora_rank:  # the adapters themselves match, and only the adapted linear layers moved
        assert ds_summary["trainable_parameters"] == torch_summary["trainable_parameters"] < 50_000
        adapters = [load_file(tmp_path / name / "adapter" / "adapter_model.safetensors") for name in runs]
        for key in adapters[0]:
            assert (adapters[1][key] - adapters[0][key]).abs().max() <= 1e-3 * float(
                adapters[0][key].abs().max()
            ) + 1e-5, key
        assert all(torch.equal(ds_weights[k], initial[k]) for k in ds_weights if "norm" in k or "embed" in k)

    # The saved model is an ordinary save_pretrained directory: the next iteration's sampler loads it.
    model, tokenizer = load_model(tmp_path / "deepspeed"), load_tokenizer(tmp_path / "deepspeed")
    ids = tokenizer(pairs[0]["prompt"], return_tensors="pt").input_ids
    assert model.generate(ids, max_new_tokens=4, do_sample=False).shape == (1, ids.shape[1] + 4)


@needs_deepspeed
@pytest.mark.distributed
def test_failing_rank_surfaces_the_childs_error(untrained_tiny, tmp_path):
    cfg = trainer_cfg(name="deepspeed", num_processes=2)
    trainer = build_trainer(cfg, OmegaConf.structured(ModelConfig(name="tiny")), OmegaConf.structured(ClusterConfig()))
    with pytest.raises(RuntimeError, match="DeepSpeed trainer .* failed") as failure:
        trainer.train(
            tmp_path / "no_such_model",
            arithmetic_pairs(16),
            tmp_path / "out",
            OmegaConf.structured(LossConfig()),
            seed=0,
        )
    assert "no_such_model" in str(failure.value)  # the child's own error is in the message
    assert not (tmp_path / "out").exists()  # nothing half-written is published


@needs_deepspeed
@pytest.mark.distributed
@pytest.mark.slow
def test_deepspeed_checkpoint_selection_picks_what_the_torch_trainer_picks(make_config, tmp_path):
    from irpo.files import read_json
    from irpo.loop import run

    common = [
        "experiment=smoke",
        "iterations=1",
        "trainer.eval_every=1",
        "trainer.max_steps=3",
        "trainer.micro_batch_size=8",
        "task.num_valid=6",
        "trainer.retrain_with_heldout=false",
        "trainer.torch.mixed_precision=none",  # DeepSpeed's fp32, to compare
    ]
    summaries, weights = {}, {}
    for name in ("torch", "deepspeed"):
        run_dir = tmp_path / name
        run(make_config(*common, f"trainer={name}", "trainer.deepspeed.num_processes=2", run_dir=run_dir))
        summaries[name] = read_json(run_dir / "iter_1" / "model" / "train_summary.json")
        weights[name] = load_file(run_dir / "iter_1" / "model" / "model.safetensors")
        assert not (run_dir / "iter_1" / "model" / "checkpoints").exists()  # scored, then deleted

    assert set(summaries["deepspeed"]["held_out_accuracy"]) == {"1", "2", "3"}
    assert summaries["deepspeed"]["held_out_accuracy"] == summaries["torch"]["held_out_accuracy"]
    assert summaries["deepspeed"]["selected_step"] == summaries["torch"]["selected_step"]
    for key in weights["torch"]:  # the selected step's weights were published, not the last step's
        assert torch.allclose(weights["deepspeed"][key], weights["torch"][key], atol=1e-4), key


def test_the_retrain_reuses_the_selection_runs_reference_log_probs(untrained_tiny, caplog):
    """Selection trains on the train pairs, the retrain on train + held-out from the same M_{t-1}: the
    reference log-probs of the train pairs are computed once, and equal a fresh computation."""
    import logging

    from irpo.training.logps import encode_pairs
    from irpo.training.torch_trainer import TorchTrainer

    pairs = arithmetic_pairs(24)
    tokenizer, model = load_tokenizer(untrained_tiny), load_model(untrained_tiny).eval()
    cfg = OmegaConf.structured(TrainerConfig(micro_batch_size=4, torch=TorchTrainerConfig("cpu", "none")))

    def reference(trainer, rows):
        data = encode_pairs(tokenizer, rows, "dpo_nll", "shared_prompt")
        return trainer.reference(model, data, tokenizer.pad_token_id, torch.device("cpu"), None, untrained_tiny, "t")

    reusing = TorchTrainer(cfg, ModelConfig(name="tiny"))
    reference(reusing, pairs[:16])
    with caplog.at_level(logging.INFO, logger="irpo.training.torch_trainer"):
        both = reference(reusing, pairs)
    assert "reference log-probs of 16 pairs reused, 8 computed" in caplog.text
    fresh = reference(TorchTrainer(cfg, ModelConfig(name="tiny")), pairs)
    for side in ("chosen", "rejected"):
        assert both[side].shape == (24,)
        assert torch.allclose(both[side], fresh[side], atol=1e-5), side
    # another packing starts over (as another reference model or precision does: they are in the same key)
    reference(reusing, pairs)
    padded = encode_pairs(tokenizer, pairs, "dpo_nll", "padded")
    other = reusing.reference(model, padded, tokenizer.pad_token_id, "cpu", None, untrained_tiny, "t")
    assert torch.allclose(other["chosen"], fresh["chosen"], atol=1e-5)
    assert len(reusing.reference_memo[1]) == 24 and reusing.reference_memo[0][1] == "padded"


@needs_deepspeed
@pytest.mark.distributed
@pytest.mark.parametrize("normalization", ["sequence", "token"])
def test_two_ranks_take_the_torch_trainers_step_under_either_nll_normalization(untrained_tiny, tmp_path, normalization):
    """One step of 8 pairs: the torch trainer in one micro-batch; two ZeRO-3 ranks of 4 pairs each, in micro-batches
    of 2 (so 4 micro-batches of unequal chosen lengths), with chunked log-probs."""
    _, row, weights = train_one_step(untrained_tiny, tmp_path / "torch", normalization, micro_batch_size=8)
    _, ds_row, ds_weights = train_one_step(
        untrained_tiny,
        tmp_path / "ds",
        normalization,
        name="deepspeed",
        num_processes=2,
        zero_stage=3,
        micro_batch_size=2,
        logprob_chunk_size=16,
    )
    for key in ("loss", "nll", "dpo", "chosen_logps", "grad_norm"):
        assert ds_row[key] == pytest.approx(row[key], rel=1e-4, abs=1e-6), key
    for key in weights:
        torch.testing.assert_close(ds_weights[key], weights[key], atol=1e-5, rtol=1e-4)
