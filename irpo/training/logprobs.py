"""Response-token log-probs without the [positions x vocabulary] logits (trainer.logprob_chunk_size > 0).

A loss over sequence log-probs needs one number per response token, log πθ(y_i | x, y_<i) = z[y_i] - logsumexp(z)
with z the output layer's logits at the position before y_i. Taking the full logits and their log-softmax keeps
[N x V] floats (N response tokens, V the vocabulary: 4800 x 49k for a SmolLM2 micro-batch of 16 pairs, over
900 MB in float32) for backward, and as many again for their gradient. Here the output layer runs `chunk_size`
positions at a time and keeps only what backward cannot cheaply redo: the hidden states (N x H) and one
logsumexp per position. Backward recomputes each chunk's logits, turns them into the gradient of the log-probs
(softmax minus one-hot, scaled by the incoming gradient) in place, and multiplies it into the hidden states'
and the output weight's gradients. At most one chunk's logits exist at a time; the price is one more output
layer matmul per chunk.

Where it runs: the output layer's own forward is swapped, for one forward pass of the model, for the chunked
computation (`scoring_output_layer`). So it runs wherever the model's forward runs, inside the model's own
call: under DeepSpeed ZeRO-3 the output weight is gathered by the layer's hooks for its forward and again for
its backward, as for any layer; a PEFT (LoRA) wrapper and gradient checkpointing of the decoder see an ordinary
forward. Under torch.autocast the matmuls run in the autocast dtype, the logsumexp and the gradient of the
log-softmax in float32, as `log_softmax(logits.float())` does on the full logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
import torch.nn.functional as F


class ChunkedTokenLogps(torch.autograd.Function):
    """log softmax(hidden @ weight.T + bias)[targets] row by row, `chunk_size` rows at a time.

    hidden: (N, H); weight: (V, H); bias: (V,) or None; targets: (N,) token ids. Returns float32 (N,).
    compute_dtype: the matmuls' dtype (the autocast dtype, else the weight's).
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size: int, compute_dtype: torch.dtype):
        ctx.chunk_size, ctx.compute_dtype = chunk_size, compute_dtype
        logsumexp = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        target_logits = torch.empty_like(logsumexp)
        weight_c, bias_c = weight.to(compute_dtype), _cast(bias, compute_dtype)
        with _no_autocast(hidden.device):
            for rows in _chunks(hidden.shape[0], chunk_size):
                logits = _logits(hidden[rows], weight_c, bias_c)
                logsumexp[rows] = torch.logsumexp(logits, dim=-1)
                target_logits[rows] = logits.gather(-1, targets[rows, None]).squeeze(-1)
        ctx.save_for_backward(hidden, weight, bias, targets, logsumexp)
        return target_logits - logsumexp

    @staticmethod
    def backward(ctx, grad_output):
        hidden, weight, bias, targets, logsumexp = ctx.saved_tensors
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        grad_hidden = torch.empty_like(hidden) if needs_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if needs_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if needs_bias else None
        weight_c, bias_c = weight.to(ctx.compute_dtype), _cast(bias, ctx.compute_dtype)
        with _no_autocast(hidden.device):
            for rows in _chunks(hidden.shape[0], ctx.chunk_size):
                # d(z[y] - logsumexp z)/dz = onehot(y) - softmax(z); times the incoming gradient g, in place
                grad_logits = _logits(hidden[rows], weight_c, bias_c)
                grad_logits.sub_(logsumexp[rows, None]).exp_()
                grad_logits.scatter_add_(-1, targets[rows, None], grad_logits.new_full((len(grad_logits), 1), -1.0))
                grad_logits.mul_(-grad_output[rows, None].float())
                grad_c = grad_logits.to(ctx.compute_dtype)
                del grad_logits
                if needs_hidden:
                    grad_hidden[rows] = grad_c @ weight_c
                if needs_weight:
                    grad_weight += grad_c.T @ hidden[rows].to(ctx.compute_dtype)
                if needs_bias:
                    grad_bias += grad_c.sum(0, dtype=torch.float32)
        return (
            grad_hidden,
            grad_weight.to(weight.dtype) if grad_weight is not None else None,
            grad_bias.to(bias.dtype) if grad_bias is not None else None,
            None,
            None,
            None,
        )


def _chunks(n: int, size: int) -> list[slice]:
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]


def _cast(tensor: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    return tensor.to(dtype) if tensor is not None else None


def _logits(hidden: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """One chunk's logits in float32, the matmul in the (already cast) weight's dtype."""
    return F.linear(hidden.to(weight.dtype), weight, bias).float()


def _no_autocast(device: torch.device):
    return torch.autocast(device.type, enabled=False)


def compute_dtype(weight: torch.Tensor) -> torch.dtype:
    """The dtype an nn.Linear's matmul runs in here: the autocast dtype where autocast is on, else the weight's."""
    device_type = weight.device.type
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return weight.dtype


def output_layer(model) -> torch.nn.Module:
    """The output layer (lm_head) of a model, a PEFT wrapper of one or a DeepSpeed engine's."""
    module = getattr(model, "module", model)  # a DeepSpeed engine holds the model as .module
    return module.get_output_embeddings()


def check_chunking(trainer_cfg) -> None:
    """trainer.logprob_chunk_size: >= 0, and not with LoRA adapters on the output layer (not a plain Linear)."""
    size = trainer_cfg.logprob_chunk_size
    if size < 0:
        raise ValueError(f"trainer.logprob_chunk_size must be >= 0 (0 = full logits), not {size}")
    if size and trainer_cfg.lora.rank > 0 and "lm_head" in trainer_cfg.lora.target_modules:
        raise ValueError(
            "trainer.lora.target_modules adapts lm_head, and trainer.logprob_chunk_size computes log-probs from a "
            "plain output layer: set trainer.logprob_chunk_size=0 (full logits) or leave lm_head out of the targets"
        )


def check_output_layer(model) -> None:
    head = output_layer(model)
    if type(head) is not torch.nn.Linear:
        raise ValueError(
            f"trainer.logprob_chunk_size computes log-probs from a plain torch.nn.Linear output layer; this model's is "
            f"{type(head).__name__} (LoRA on lm_head?): set trainer.logprob_chunk_size=0 (full logits)"
        )


@contextlib.contextmanager
def scoring_output_layer(model, rows: torch.Tensor, targets: torch.Tensor, chunk_size: int) -> Iterator[list]:
    """For the forward passes inside the block, the output layer returns, instead of logits, the log-probs of
    `targets` (N,) at the positions `rows` (N,) of its input flattened to (positions, H): a float32 (N,).

    Yields a list that collects what the layer returned, so the caller can check that the model passed it on as
    its logits unchanged (a model that rescales or caps its logits after the layer cannot be scored this way).
    """
    check_output_layer(model)
    head = output_layer(model)
    weight, bias = head.weight, head.bias
    assert isinstance(weight, torch.Tensor)
    returned: list[torch.Tensor] = []

    def forward(hidden: torch.Tensor) -> torch.Tensor:
        selected = hidden.reshape(-1, hidden.shape[-1]).index_select(0, rows)
        logps = ChunkedTokenLogps.apply(selected, weight, bias, targets, chunk_size, compute_dtype(weight))
        returned.append(logps)
        return logps

    own_forward = head.__dict__.get("forward")  # one set on the instance (accelerate's hooks) is put back
    head.forward = forward  # an instance attribute: module hooks (ZeRO-3's gather) still run around it
    try:
        yield returned
    finally:
        if own_forward is None:
            del head.forward
        else:
            head.forward = own_forward


def token_logps(model, inputs: dict[str, torch.Tensor], rows: torch.Tensor, targets: torch.Tensor, chunk_size: int):
    """log πθ(targets[i] | the tokens up to position rows[i]) for one forward of `model` on `inputs`, float32 (N,).

    rows index the flattened (batch x width) positions; a position may predict several targets (a shared prompt's
    last position predicts the first token of both responses).
    """
    device = inputs["input_ids"].device
    rows, targets = rows.to(device), targets.to(device)
    with scoring_output_layer(model, rows, targets, chunk_size) as returned:
        logps = model(**inputs).logits
    if len(returned) != 1 or logps.shape != returned[0].shape or not torch.equal(logps, returned[0]):
        raise RuntimeError(
            f"{type(output_layer(model)).__name__}'s log-probs did not come back from {type(model).__name__} as they "
            "left the output layer (the model calls it otherwise, or changes its logits after it): set "
            "trainer.logprob_chunk_size=0 (full logits)"
        )
    return logps
