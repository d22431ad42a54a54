"""trainer.lora: only the adapters learn, M_t is the adapters merged into M_{t-1} and saved as a plain model,
the next iteration starts from it and scores its reference with it, and selection and baselines work on."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import arithmetic_pairs
from omegaconf import OmegaConf
from safetensors.torch import load_file

from irpo.config import ClusterConfig, LoraConfig, LossConfig, ModelConfig, TorchTrainerConfig, TrainerConfig, validate
from irpo.models.loading import load_model, load_tokenizer
from irpo.models.tokens import encode
from irpo.protocols import Checkpoint
from irpo.training import build_trainer, lora
from irpo.training.data import collate

peft = pytest.importorskip("peft", reason="peft is not installed (pip install -e '.[lora]')")
LORA = ["trainer.lora.rank=4", "trainer.lora.alpha=8", "trainer.lr=5e-3"]


def lora_trainer(**overrides):
    cfg = OmegaConf.structured(
        TrainerConfig(
            **{"lr": 1e-2, "batch_size": 8, "micro_batch_size": 4, "max_steps": 3, **overrides},
            torch=TorchTrainerConfig(device="cpu"),
        )
    )
    cfg.lora.rank, cfg.lora.alpha, cfg.lora.save_adapter = 4, 8.0, True
    return build_trainer(cfg, OmegaConf.structured(ModelConfig(name="tiny")), OmegaConf.structured(ClusterConfig()))


def logits(model, texts: list[str], tokenizer) -> torch.Tensor:
    batch = collate([encode(tokenizer, t, "") for t in texts], tokenizer.pad_token_id)
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


def test_only_adapter_parameters_receive_gradients(untrained_tiny):
    from irpo.training.logps import encode_pairs
    from irpo.training.step import micro_batch_loss

    model = lora.wrap(load_model(untrained_tiny), LoraConfig(rank=4), seed=0)
    tokenizer = load_tokenizer(untrained_tiny)
    data = encode_pairs(tokenizer, arithmetic_pairs(4), "sft")
    losses, _, _ = micro_batch_loss(
        model, [0, 1, 2, 3], data, OmegaConf.structured(LossConfig(name="sft")), tokenizer.pad_token_id, "cpu"
    )
    losses.sum().backward()
    with_grad = {name for name, p in model.named_parameters() if p.grad is not None}
    assert with_grad == {name for name, _ in model.named_parameters() if "lora_" in name}
    # B starts at 0, so the first gradient reaches B only (A's gradient goes through B).
    assert all(float(model.get_parameter(name).grad.abs().sum()) > 0 for name in with_grad if "lora_B" in name)
    counts = lora.count_parameters(model)
    assert counts["trainable_parameters"] == sum(model.get_parameter(name).numel() for name in with_grad)
    assert counts["trainable_parameters"] < 0.05 * counts["parameters"]  # 4 layers x 7 linears x rank 4


def test_merged_model_is_the_base_plus_adapter_and_only_adapted_weights_moved(untrained_tiny, tmp_path):
    summary = lora_trainer().train(untrained_tiny, arithmetic_pairs(16), tmp_path / "m1", LossConfig(), seed=1)
    assert summary["lora"]["rank"] == 4 and summary["trainable_parameters"] < summary["parameters"]
    initial, merged = load_file(untrained_tiny / "model.safetensors"), load_file(tmp_path / "m1" / "model.safetensors")
    assert set(merged) == set(initial)  # a plain model: no lora_A/lora_B/base_layer keys
    adapted = {k for k in merged if not torch.equal(merged[k], initial[k])}
    assert adapted and all(k.split(".")[-2] in lora.linear_layer_names(load_model(untrained_tiny)) for k in adapted)
    assert not any("embed" in k or "norm" in k for k in adapted)  # untargeted weights are exactly M_{t-1}'s

    # M_t's logits = the frozen base with the saved adapter on top (merging loses nothing).
    tokenizer = load_tokenizer(untrained_tiny)
    texts = [p["prompt"] + p["chosen"] for p in arithmetic_pairs(3, seed=5)]
    with_adapter = peft.PeftModel.from_pretrained(load_model(untrained_tiny), tmp_path / "m1" / "adapter")
    base_plus_adapter = logits(with_adapter, texts, tokenizer)
    assert not torch.allclose(base_plus_adapter, logits(load_model(untrained_tiny), texts, tokenizer), atol=1e-4)
    torch.testing.assert_close(
        logits(load_model(tmp_path / "m1"), texts, tokenizer), base_plus_adapter, atol=1e-5, rtol=0
    )


def test_selection_keeps_the_best_steps_adapters_and_generates_with_the_peft_model(untrained_tiny, tmp_path):
    pairs = arithmetic_pairs(24)
    scripted = {1: 0.25, 2: 0.75, 3: 0.5}  # step 2 wins
    seen = []

    class ScriptedScorer:
        def score(self, checkpoint: Checkpoint) -> float:
            model, ids = checkpoint.model, checkpoint.tokenizer(pairs[0]["prompt"], return_tensors="pt").input_ids
            assert model.generate(input_ids=ids, max_new_tokens=3, do_sample=False).shape[1] == ids.shape[1] + 3
            seen.append(type(model).__name__)
            return scripted[checkpoint.step]

    selected = lora_trainer(eval_every=1).train(
        untrained_tiny, pairs, tmp_path / "sel", LossConfig(), 2, scorer=ScriptedScorer()
    )
    two_steps = lora_trainer(max_steps=2).train(untrained_tiny, pairs, tmp_path / "two", LossConfig(), seed=2)
    assert seen == ["PeftModelForCausalLM"] * 3
    assert selected["selected_step"] == 2 and two_steps["steps"] == 2
    chosen, reference = (
        load_file(tmp_path / "sel" / "model.safetensors"),
        load_file(tmp_path / "two" / "model.safetensors"),
    )
    for key in reference:
        torch.testing.assert_close(chosen[key], reference[key], atol=0, rtol=0)
    kept = load_file(tmp_path / "sel" / "adapter" / "adapter_model.safetensors")
    for key, value in load_file(tmp_path / "two" / "adapter" / "adapter_model.safetensors").items():
        assert torch.equal(kept[key], value), key


def test_unknown_target_module_fails_listing_the_models_linear_layers(make_config):
    cfg = make_config("trainer.lora.rank=4", "trainer.lora.target_modules=[q_proj,c_attn]")
    with pytest.raises(
        ValueError,
        match=r"c_attn name no linear layer of this model; its linear layers are: "
        r"down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj",
    ):
        validate(cfg)
    with pytest.raises(ValueError, match=r"trainer.lora.rank must be >= 0"):
        validate(make_config("trainer.lora.rank=-1"))
    with pytest.raises(ValueError, match="target_modules is empty"):
        validate(make_config("trainer.lora.rank=4", "trainer.lora.target_modules=[]"))
    validate(make_config("trainer.lora.target_modules=[c_attn]"))  # rank 0: LoRA is off, nothing to check


@pytest.mark.slow
def test_each_iteration_starts_from_and_is_scored_against_the_merged_previous_model(make_config, tmp_path):
    from irpo.files import read_json
    from irpo.loop import run

    run(make_config("experiment=smoke", "iterations=2", *LORA))
    root = tmp_path / "run"
    m0_keys = set(load_file(read_json(root / "iter_0" / "metrics.json")["model"] + "/model.safetensors"))
    for t in (1, 2):
        metrics = read_json(root / f"iter_{t}" / "metrics.json")
        assert metrics["model"] == str(root / f"iter_{t}" / "model")
        assert metrics["train"]["lora"]["rank"] == 4
        assert set(metrics["train"]["held_out_accuracy"]) == {"2", "3"}  # selection ran, then the retrain
        assert set(load_file(root / f"iter_{t}" / "model" / "model.safetensors")) == m0_keys  # merged, plain
        assert not (root / f"iter_{t}" / "model" / "adapter").exists()  # save_adapter is off by default
    summary = read_json(root / "iter_2" / "model" / "train_summary.json")
    assert summary["init_model"] == str(root / "iter_1" / "model")
    # The reference is M_1 itself: before the first update the policy (M_1 + zero adapters) equals it, so
    # every pair's DPO reward margin is exactly 0 at step 1.
    first = json.loads((root / "iter_2" / "model" / "train_log.jsonl").read_text().splitlines()[0])
    assert first["reward_margin"] == pytest.approx(0.0, abs=1e-6)


@pytest.mark.slow
def test_sft_baseline_trains_adapters(make_config, tmp_path):
    from irpo.files import read_json
    from irpo.loop import run

    run(make_config("experiment=smoke", "method=sft_gold", *LORA))
    train = read_json(tmp_path / "run" / "iter_1" / "metrics.json")["train"]
    assert train["loss"] == "sft" and train["lora"]["rank"] == 4 and train["steps"] > 0


def test_one_gpu_8b_preset_is_the_papers_gsm8k_protocol_with_lora_and_vllm(make_config):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = make_config("experiment=gsm8k_8b_lora_1gpu")
    assert (cfg.task.name, cfg.sampler.name, cfg.model.dtype) == ("gsm8k", "vllm", "bfloat16")
    assert cfg.trainer.lora.rank == 16 and cfg.trainer.gradient_checkpointing
    assert cfg.trainer.eval_every > 0 and cfg.trainer.retrain_with_heldout and cfg.generation.num_samples == 30
    # Its target modules name linear layers of the 8B architecture (shapes only, on the meta device).
    with torch.device("meta"):
        model = LlamaForCausalLM(
            LlamaConfig(
                hidden_size=4096,
                intermediate_size=14336,
                num_hidden_layers=1,
                num_attention_heads=32,
                num_key_value_heads=8,
                vocab_size=128256,
            )
        )
    lora.check_target_modules(model, cfg.trainer.lora.target_modules)
