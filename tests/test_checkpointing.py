"""trainer.checkpoint_policy: what a checkpointed layer recomputes in backward, and that every policy gives the
gradients of no checkpointing, bit for bit."""

from __future__ import annotations

import collections

import pytest
import torch
from omegaconf import OmegaConf
from torch.utils._python_dispatch import TorchDispatchMode

from irpo.config import LossConfig, validate
from irpo.models.loading import load_model, load_tokenizer
from irpo.training.checkpointing import enable_checkpointing
from irpo.training.logps import encode_pairs
from irpo.training.optim import prepare_model

MATMULS = ("mm", "addmm", "bmm")


class OpCounter(TorchDispatchMode):
    """Counts the aten ops that run while it is active, by name."""

    def __init__(self):
        super().__init__()
        self.counts: collections.Counter = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.counts[func.overloadpacket.__name__] += 1
        return func(*args, **(kwargs or {}))


def step(model_dir, pairs, policy: str | None, mixed: torch.dtype | None, prepare=None):
    """(per-pair losses, {parameter: gradient}, ops run in backward) of one DPO+NLL micro-batch."""
    from irpo.training.step import micro_batch_loss

    tokenizer = load_tokenizer(model_dir)
    data = encode_pairs(tokenizer, pairs, "dpo_nll", "shared_prompt", 1024)
    data.reference = {side: torch.full((len(pairs),), -20.0) for side in ("chosen", "rejected")}
    model = load_model(model_dir)
    if policy is not None:
        enable_checkpointing(model, policy)
    model = prepare(model) if prepare else model
    model.train()
    loss_cfg = OmegaConf.structured(LossConfig(name="dpo_nll", alpha=1.0, beta=0.1))
    with torch.autocast("cpu", dtype=mixed or torch.float32, enabled=mixed is not None):
        losses, _, _ = micro_batch_loss(model, list(range(len(pairs))), data, loss_cfg, tokenizer.pad_token_id, "cpu")
    with OpCounter() as backward_ops:
        losses.sum().backward()
    grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
    return losses.detach(), grads, backward_ops.counts


@pytest.mark.parametrize("mixed", [None, torch.bfloat16], ids=["float32", "bf16_autocast"])
def test_every_policy_gives_the_gradients_of_no_checkpointing_bit_for_bit(untrained_tiny, task_pairs, mixed):
    plain_losses, plain_grads, _ = step(untrained_tiny, task_pairs[:4], None, mixed)
    for policy in ("full", "matmuls"):
        losses, grads, _ = step(untrained_tiny, task_pairs[:4], policy, mixed)
        assert torch.equal(losses, plain_losses), policy
        assert grads.keys() == plain_grads.keys()
        for name, grad in grads.items():
            assert torch.equal(grad, plain_grads[name]), f"{policy}: {name}"


def test_matmuls_recomputes_the_elementwise_ops_and_no_matmul_full_recomputes_both(untrained_tiny, task_pairs):
    _, _, plain = step(untrained_tiny, task_pairs[:4], None, None)
    _, _, full = step(untrained_tiny, task_pairs[:4], "full", None)
    _, _, matmuls = step(untrained_tiny, task_pairs[:4], "matmuls", None)
    layers = len(load_model(untrained_tiny).model.layers)
    # The layer's forward again in backward: its projections once more (full only).
    assert sum(full[op] for op in MATMULS) >= sum(plain[op] for op in MATMULS) + 4 * layers
    assert sum(matmuls[op] for op in MATMULS) == sum(plain[op] for op in MATMULS)
    # The norms (rsqrt) and the MLP's activation (silu) run in backward under both policies, not without.
    for op in ("rsqrt", "silu"):
        assert plain[op] == 0 and full[op] >= layers and matmuls[op] >= layers, op


def test_matmuls_policy_under_lora_matches_no_checkpointing(untrained_tiny, task_pairs):
    from irpo.config import TrainerConfig

    def with_lora(policy):
        cfg = OmegaConf.structured(TrainerConfig)
        cfg.lora.rank, cfg.gradient_checkpointing, cfg.checkpoint_policy = 4, policy is not None, policy or "full"
        return lambda model: prepare_model(model, cfg, seed=0)

    _, plain, _ = step(untrained_tiny, task_pairs[:4], None, None, with_lora(None))
    _, selective, _ = step(untrained_tiny, task_pairs[:4], None, None, with_lora("matmuls"))
    assert plain and all("lora_" in name for name in plain)
    for name, grad in selective.items():
        assert torch.equal(grad, plain[name]), name


def test_an_unknown_policy_or_one_without_checkpointing_fails_at_config_time(make_config):
    with pytest.raises(ValueError, match="unknown trainer.checkpoint_policy 'matmul'; valid policies: full, matmuls"):
        validate(make_config("trainer.gradient_checkpointing=true", "trainer.checkpoint_policy=matmul"))
    with pytest.raises(ValueError, match="takes effect only with gradient_checkpointing=true"):
        validate(make_config("trainer.checkpoint_policy=matmuls"))
    validate(make_config("trainer.gradient_checkpointing=true", "trainer.checkpoint_policy=matmuls"))
    zero3 = ("trainer=deepspeed", "trainer.gradient_checkpointing=true", "trainer.checkpoint_policy=matmuls")
    with pytest.raises(ValueError, match=r"does not run under ZeRO-3 \(trainer.deepspeed.zero_stage=3\)"):
        validate(make_config(*zero3))
    validate(make_config(*zero3, "trainer.deepspeed.zero_stage=2"))
