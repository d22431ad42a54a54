"""Response-token log-probs without the [positions x vocabulary] logits (trainer.logprob_chunk_size > 0).

A loss over sequence log-probs needs one number per response token, log πθ(y_i | x, y_<i) = z[y_i] - logsumexp(z)
with z the output layer's logits at the position before y_i. Taking the full logits and their log-softmax keeps
[N x V] floats (N response tokens, V the vocabulary: 4800 x 49k for a SmolLM2 micro-batch of 16 pairs, over
900 MB in float32) for backward, and as many again for their gradient. Here the output layer runs `chunk_size`
positions at a time, against the vocabulary VOCAB_BLOCK rows at a time (the logsumexp accumulated across blocks),
and keeps only what backward cannot cheaply redo: the hidden states (N x H) and one logsumexp per position.
Backward recomputes each block's logits, turns them into the gradient of the log-probs (softmax minus one-hot,
scaled by the incoming gradient) in place, and multiplies it into the hidden states' and the output weight's
gradients. At most one block of one chunk's logits exists at a time; the price is one more output-layer matmul.

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

# Output-layer rows per block: a chunk's logits are made, used and dropped a block of the vocabulary at a time, so
# what a chunk holds at once (chunk_size x VOCAB_BLOCK floats, 32 MB at 1024 positions) does not grow with V.
VOCAB_BLOCK = 8192


class ChunkedTokenLogps(torch.autograd.Function):
    """log softmax(hidden @ weight.T + bias)[targets] row by row: `chunk_size` rows at a time, each against the
    vocabulary a block of VOCAB_BLOCK rows of `weight` at a time (the logsumexp accumulated across blocks).

    hidden: (N, H); weight: (V, H); bias: (V,) or None; targets: (N,) token ids. Returns float32 (N,).
    compute_dtype: the matmuls' dtype (the autocast dtype, else the weight's); logits and their softmax in float32.
    """

    @staticmethod
    def forward(ctx, hidden, weight, bias, targets, chunk_size: int, compute_dtype: torch.dtype):
        ctx.chunk_size, ctx.compute_dtype = chunk_size, compute_dtype
        logsumexp = torch.empty(hidden.shape[0], dtype=torch.float32, device=hidden.device)
        target_logits, logps = torch.empty_like(logsumexp), torch.empty_like(logsumexp)
        with _no_autocast(hidden.device):
            for rows in _chunks(hidden.shape[0], chunk_size):
                h, t = hidden[rows].to(compute_dtype), targets[rows]
                running_max = torch.full_like(logsumexp[rows], float("-inf"))
                running_sum = torch.zeros_like(running_max)
                for block in _chunks(weight.shape[0], VOCAB_BLOCK):
                    logits = _logits(h, weight, bias, block, compute_dtype)
                    inside = (t >= block.start) & (t < block.stop)
                    target_logits[rows][inside] = logits[inside, t[inside] - block.start]
                    new_max = torch.maximum(running_max, logits.amax(-1))
                    running_sum.mul_((running_max - new_max).exp_()).add_(logits.sub_(new_max[:, None]).exp_().sum(-1))
                    running_max = new_max
                # (z[y] - max) - log Σ exp(z - max), in log_softmax's order: no large numbers cancel
                logps[rows] = (target_logits[rows] - running_max) - running_sum.log()
                logsumexp[rows] = running_max + running_sum.log()
        ctx.save_for_backward(hidden, weight, bias, targets, logsumexp)
        return logps

    @staticmethod
    def backward(ctx, grad_output):
        hidden, weight, bias, targets, logsumexp = ctx.saved_tensors
        needs_hidden, needs_weight, needs_bias = ctx.needs_input_grad[:3]
        dtype = ctx.compute_dtype
        grad_hidden = torch.empty_like(hidden) if needs_hidden else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if needs_weight else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if needs_bias else None
        with _no_autocast(hidden.device):
            for rows in _chunks(hidden.shape[0], ctx.chunk_size):
                h, t, g = hidden[rows].to(dtype), targets[rows], grad_output[rows].float()
                grad_h = torch.zeros(h.shape, dtype=torch.float32, device=h.device) if needs_hidden else None
                for block in _chunks(weight.shape[0], VOCAB_BLOCK):
                    # d(z[y] - logsumexp z)/dz = onehot(y) - softmax(z), times the incoming gradient g: in place
                    grad_logits = _logits(h, weight, bias, block, dtype).sub_(logsumexp[rows, None]).exp_()
                    inside = ((t >= block.start) & (t < block.stop)).nonzero().squeeze(-1)
                    grad_logits[inside, t[inside] - block.start] -= 1.0
                    grad_c = grad_logits.mul_(-g[:, None]).to(dtype)
                    if grad_h is not None:
                        grad_h += grad_c @ weight[block].to(dtype)
                    if grad_weight is not None:
                        grad_weight[block] += grad_c.T @ h
                    if grad_bias is not None:
                        grad_bias[block] += grad_c.sum(0, dtype=torch.float32)
                if grad_hidden is not None and grad_h is not None:
                    grad_hidden[rows] = grad_h.to(hidden.dtype)
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


def _logits(hidden: torch.Tensor, weight, bias, block: slice, dtype: torch.dtype) -> torch.Tensor:
    """One chunk's logits over one block of the vocabulary, in float32; the matmul in `dtype`."""
    bias = bias[block].to(dtype) if bias is not None else None
    return F.linear(hidden, weight[block].to(dtype), bias).float()


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
