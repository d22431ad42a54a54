"""Gradient checkpointing: what a checkpointed decoder layer keeps for backward and what it recomputes."""

from __future__ import annotations

import functools

import torch
from torch.utils.checkpoint import CheckpointPolicy, create_selective_checkpoint_contexts

# full: keep each layer's input only, recompute the whole layer in backward (transformers' own checkpointing).
# matmuls: keep the outputs of the matmuls and the attention, recompute only the elementwise ops between them
# (norms, rotary embedding, activation, dtype casts), whose saved tensors are most of a layer's and whose compute
# is a small part of its forward.
CHECKPOINT_POLICIES = ("full", "matmuls")

_aten = torch.ops.aten
_KEPT_OPS = frozenset(
    op
    for name in (
        "mm",
        "addmm",
        "bmm",
        "baddbmm",
        "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_dot_product_flash_attention",
        "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention",
    )
    if (op := getattr(getattr(_aten, name, None), "default", None)) is not None
)


def check_checkpoint_policy(policy: str) -> None:
    if policy not in CHECKPOINT_POLICIES:
        raise ValueError(
            f"unknown trainer.checkpoint_policy '{policy}'; valid policies: {', '.join(CHECKPOINT_POLICIES)}"
        )


def check_checkpointing(trainer) -> None:
    """A known policy, none but the default without checkpointing (where it would silently do nothing), and
    `matmuls` not under ZeRO-3."""
    policy = trainer.checkpoint_policy
    check_checkpoint_policy(policy)
    if policy != "full" and not trainer.gradient_checkpointing:
        raise ValueError(f"trainer.checkpoint_policy={policy} takes effect only with gradient_checkpointing=true")
    if policy == "matmuls" and trainer.name == "deepspeed" and trainer.deepspeed.zero_stage == 3:
        # ZeRO-3 gathers each weight again to recompute, ops torch's selective checkpointing did not see in forward
        raise ValueError(
            "trainer.checkpoint_policy=matmuls does not run under ZeRO-3 (trainer.deepspeed.zero_stage=3): use "
            "checkpoint_policy=full there, or zero_stage=2"
        )


def enable_checkpointing(model, policy: str) -> None:
    """Checkpoints every decoder layer of `model` under `policy` (one of CHECKPOINT_POLICIES)."""
    check_checkpoint_policy(policy)
    kwargs: dict = {"use_reentrant": False}
    if policy == "matmuls":
        kwargs["context_fn"] = functools.partial(create_selective_checkpoint_contexts, _keep_matmul_outputs)
    if hasattr(model, "activation_checkpointing_enable"):  # transformers 5 (the older name is deprecated there)
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def _keep_matmul_outputs(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in _KEPT_OPS else CheckpointPolicy.PREFER_RECOMPUTE
