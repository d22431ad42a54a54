"""Decode attention that reads each prompt's keys and values once for all of its N samples.

The N samples of a prompt share its prefix, so at a decode step their queries can meet the prompt's keys as
one block: (prompts, kv heads, N x query heads per kv head, head dim) against (prompts, kv heads, prompt
length, head dim). Only each sample's own tokens are kept per sample. The two parts are joined by their
log-sum-exps, which is exact (up to rounding) because softmax over a union of keys is the lse-weighted mix of
the softmaxes over each part. Against the plain path (the prompt's cache copied N times, then every key head
repeated for its query heads at every step) this reads the prompt once instead of N x heads/kv heads times;
on SmolLM2-135M (3 kv heads, 9 query heads, N=8) it is the larger share of a decode step's attention.

It plugs into transformers through its attention interface (`AttentionInterface.register`): the model's
attention modules call `shared_prompt_attention` with the query and this step's per-sample keys and values,
and the prompt's part is found in the `SharedPrompt` that `attending(model, shared)` makes current.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import torch
from transformers import AttentionInterface

IMPLEMENTATION = "irpo_shared_prompt"
_CURRENT: contextvars.ContextVar[SharedPrompt] = contextvars.ContextVar("irpo_shared_prompt")


def supports_shared_prompt(model) -> bool:
    """Whether `model`'s attention can be swapped for this one: it goes through transformers' attention
    interface, and no layer limits or reshapes its scores (a sliding window or a logit soft-cap would be
    ignored here)."""
    config = model.config
    return (
        bool(model._can_set_attn_implementation())
        and getattr(config, "sliding_window", None) is None
        and getattr(config, "attn_logit_softcapping", None) is None
        and not getattr(config, "layer_types", None)
    )


class SharedPrompt:
    """The prompts' keys and values per layer (prompts, kv heads, prompt length, head dim), their padding as an
    additive bias, and which prompt and sample each batch row is (rows are prompt-major, n samples each)."""

    def __init__(self, keys: list[torch.Tensor], values: list[torch.Tensor], prompt_mask: torch.Tensor, n: int):
        self.keys = [k.contiguous() for k in keys]
        self.values = [v.contiguous() for v in values]
        dtype = self.keys[0].dtype
        bias = torch.zeros(prompt_mask.shape, dtype=dtype, device=prompt_mask.device)
        self.bias = bias.masked_fill(prompt_mask == 0, float("-inf"))[:, None, None, :]  # (prompts, 1, 1, length)
        self.n = n
        self.held = torch.arange(prompt_mask.shape[0], device=prompt_mask.device)  # original index of each prompt
        self.slots: torch.Tensor | None = None  # batch row -> slot in the (prompts x n) grid; None: row == slot

    def keep(self, samples: torch.Tensor) -> None:
        """The batch now holds these samples (indices into the original prompts x n, ascending): prompts left
        without one are dropped, and each row's slot in the grid of the prompts that remain is recomputed."""
        prompt_of = torch.div(samples, self.n, rounding_mode="floor")
        prompts, local = torch.unique_consecutive(prompt_of, return_inverse=True)
        if len(prompts) < len(self.held):
            at = torch.searchsorted(self.held, prompts)
            self.keys = [k[at] for k in self.keys]
            self.values = [v[at] for v in self.values]
            self.bias = self.bias[at]
            self.held = prompts
        self.slots = local * self.n + samples % self.n

    def attend(self, layer: int, query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, scale: float):
        """query (rows, heads, 1, dim); keys, values: the rows' own tokens (rows, kv heads, own length, dim).
        Returns (rows, 1, heads, dim), as transformers' attention functions do."""
        rows, heads, _, dim = query.shape
        kv_heads = keys.shape[1]
        group = heads // kv_heads
        prompts = self.bias.shape[0]
        if self.slots is None:
            grid = query.view(rows, heads, dim)
        else:  # slots of finished samples stay zero: their outputs are computed and never read
            grid = query.new_zeros(prompts * self.n, heads, dim)
            grid[self.slots] = query.view(rows, heads, dim)
        # (prompts, n, kv heads, group, dim) -> (prompts, kv heads, n x group, dim): the samples' queries as one block
        block = grid.view(prompts, self.n, kv_heads, group, dim).permute(0, 2, 1, 3, 4)
        block = block.reshape(prompts, kv_heads, self.n * group, dim)
        bias = self.bias.expand(prompts, kv_heads, self.n * group, self.bias.shape[-1])
        prompt_out, prompt_lse = attention_with_lse(block, self.keys[layer], self.values[layer], bias, scale)
        prompt_out = prompt_out.view(prompts, kv_heads, self.n, group, dim).permute(0, 2, 1, 3, 4)
        prompt_out = prompt_out.reshape(prompts * self.n, heads, dim)
        prompt_lse = prompt_lse.view(prompts, kv_heads, self.n, group).permute(0, 2, 1, 3).reshape(-1, heads)
        if self.slots is not None:
            prompt_out, prompt_lse = prompt_out[self.slots], prompt_lse[self.slots]
        # Each row's own tokens: its query heads as the query positions of its kv head.
        own_out, own_lse = attention_with_lse(query.view(rows, kv_heads, group, dim), keys, values, None, scale)
        own_out, own_lse = own_out.reshape(rows, heads, dim), own_lse.reshape(rows, heads)
        top = torch.maximum(prompt_lse, own_lse)
        prompt_weight, own_weight = (prompt_lse - top).exp(), (own_lse - top).exp()
        mixed = prompt_out.float() * prompt_weight[..., None] + own_out.float() * own_weight[..., None]
        mixed = mixed / (prompt_weight + own_weight)[..., None]
        return mixed.to(query.dtype).view(rows, 1, heads, dim)


def attention_with_lse(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax attention without a causal mask and its log-sum-exp per query: (..., queries, dim) and
    (..., queries) in float32. On a CPU, PyTorch's fused flash kernel; elsewhere `plain_attention_with_lse`."""
    if query.device.type != "cpu":
        return plain_attention_with_lse(query, keys, values, bias, scale)
    out, lse = torch.ops.aten._scaled_dot_product_flash_attention_for_cpu(
        query, keys, values, attn_mask=bias, scale=scale
    )
    return out, lse.float()


def plain_attention_with_lse(
    query: torch.Tensor, keys: torch.Tensor, values: torch.Tensor, bias: torch.Tensor | None, scale: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """The same in plain operations, in float32."""
    scores = (query.float() @ keys.float().transpose(-1, -2)) * scale
    if bias is not None:
        scores = scores + bias.float()
    lse = scores.logsumexp(dim=-1)
    return ((scores - lse[..., None]).exp() @ values.float()).to(query.dtype), lse


def shared_prompt_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """transformers' attention-function signature; the prompt's part comes from the current `SharedPrompt`."""
    scale = scaling if scaling is not None else query.shape[-1] ** -0.5
    return _CURRENT.get().attend(module.layer_idx, query, key, value, scale), None


@contextlib.contextmanager
def attending(model, shared: SharedPrompt) -> Iterator[None]:
    """Within: `model`'s attention reads the prompts from `shared` and each row's own tokens from its cache."""
    AttentionInterface.register(IMPLEMENTATION, shared_prompt_attention)
    previous = model.config._attn_implementation
    token = _CURRENT.set(shared)
    model.set_attn_implementation(IMPLEMENTATION)
    try:
        yield
    finally:
        model.set_attn_implementation(previous)
        _CURRENT.reset(token)
