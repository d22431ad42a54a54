"""A sampling loop for small models on a CPU, where transformers' `generate` spends most of its time
outside the model's arithmetic (measured on the embedded 1M-parameter model, 256 rows: a third in
copying the KV cache, a quarter in prefilling every prompt N times, a tenth in the stop check).

Each prompt is prefilled once. Its N samples attend to its keys and values as one block
(irpo/sampling/shared_prompt.py) where the model's attention allows it; otherwise its cache is copied N
ways. A sample's own tokens go in a buffer that doubles when full (not a `torch.cat` of the whole cache
every token); finished rows leave the batch; and only rows whose newest token can end a line or a stop
string are decoded and checked. The distribution is `generate`'s: temperature, then top-p (the same nucleus
rule as its TopP warper), and greedy is its argmax. A token is drawn by inverting the cumulative
distribution at a uniform from a generator seeded per prompt and step, so a sample does not depend on its
batch, and drawing never moves torch's global random stream.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import cast

import torch
from transformers.cache_utils import Cache, DynamicLayer

from irpo.sampling.shared_prompt import SharedPrompt, attending, supports_shared_prompt


class GrowingLayer(DynamicLayer):
    """One layer's keys and values in a buffer with room to spare: appending writes in place, and the
    buffer doubles when full, so a token costs its own size rather than a copy of the whole cache."""

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        self.device = key_states.device
        self.length = 0
        self._keys = key_states.new_empty(0)
        self._values = value_states.new_empty(0)
        self.is_initialized = True

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs):
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        end = self.length + key_states.shape[-2]
        if self._keys.numel() == 0 or end > self._keys.shape[-2]:
            self._grow(key_states, value_states, max(2 * end, 64))
        self._keys[:, :, self.length : end] = key_states
        self._values[:, :, self.length : end] = value_states
        self.length = end
        self.keys, self.values = self._keys[:, :, :end], self._values[:, :, :end]
        return self.keys, self.values

    def _grow(self, key_states: torch.Tensor, value_states: torch.Tensor, capacity: int) -> None:
        batch, heads, _, dim = key_states.shape
        keys = key_states.new_empty(batch, heads, capacity, dim)
        values = value_states.new_empty(batch, heads, capacity, value_states.shape[-1])
        if self.length:
            keys[:, :, : self.length] = self._keys[:, :, : self.length]
            values[:, :, : self.length] = self._values[:, :, : self.length]
        self._keys, self._values = keys, values

    def get_seq_length(self) -> int:
        return self.length if self.is_initialized else 0

    def stored(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values appended so far."""
        return self._keys[:, :, : self.length], self._values[:, :, : self.length]

    def batch_repeat_interleave(self, repeats: int) -> None:
        if self.get_seq_length():
            self._keys = self._keys.repeat_interleave(repeats, dim=0)
            self._values = self._values.repeat_interleave(repeats, dim=0)
            self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        if self.get_seq_length():
            self._keys = self._keys[indices]
            self._values = self._values[indices]
            self.keys, self.values = self._keys[:, :, : self.length], self._values[:, :, : self.length]


@dataclass(frozen=True)
class Draw:
    """What to draw: n samples per prompt (n=1 and temperature 0: greedy), at most max_new_tokens each."""

    num_samples: int
    temperature: float
    top_p: float
    max_new_tokens: int
    seed: int


def warped_scores(logits: torch.Tensor, draw: Draw) -> torch.Tensor:
    """(rows, vocab) logits -> the scores `generate` samples from: divided by the temperature, then the
    tokens outside the top-p nucleus at -inf (its TopP warper's rule: the most likely token always stays)."""
    scores = logits.float() / draw.temperature
    if draw.top_p < 1.0:
        ordered, order = torch.sort(scores, descending=False)
        drop = ordered.softmax(dim=-1).cumsum(dim=-1) <= (1 - draw.top_p)
        drop[:, -1] = False
        scores = scores.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return scores


def sample_uniforms(live: torch.Tensor, n: int, seed: int, keys: list[int], step: int) -> torch.Tensor:
    """(rows,) uniforms in [0, 1) for the live samples (sample index = prompt * n + j), drawn per prompt from a
    generator seeded by (seed, the prompt's key, step): a sample's draw depends on nothing else in the batch,
    so batch size, shards and which rows have finished never change it."""
    samples = live.tolist()
    uniforms = torch.empty(len(samples), dtype=torch.float64)
    generator = torch.Generator()
    start = 0
    while start < len(samples):
        prompt = samples[start] // n
        stop = start
        while stop < len(samples) and samples[stop] // n == prompt:
            stop += 1
        generator.manual_seed((seed * 1_000_003 + keys[prompt]) * 1_000_033 + step)
        drawn = torch.rand(n, generator=generator, dtype=torch.float64)
        uniforms[start:stop] = drawn[[i % n for i in samples[start:stop]]]
        start = stop
    return uniforms.to(live.device)


def next_tokens(logits: torch.Tensor, draw: Draw, uniforms: torch.Tensor | None) -> torch.Tensor:
    """(rows, vocab) logits -> (rows,) tokens: the argmax at temperature 0, else a draw from the softmax of
    `warped_scores` by inverting its cumulative sum at each row's uniform (one random number a row, where the
    Gumbel-max trick needs one per vocabulary entry: a sixth of the step on SmolLM2's 49k tokens)."""
    if draw.temperature == 0 or uniforms is None:
        return logits.argmax(dim=-1)
    scores = warped_scores(logits, draw)
    cumulative = (scores - scores.max(dim=-1, keepdim=True).values).exp().cumsum(dim=-1)
    total = cumulative[:, -1:].contiguous()
    # The first token whose cumulative mass passes u * total; rounding can put u * total at the total itself,
    # so never past the last token with any mass (the first to reach the total).
    picked = torch.searchsorted(cumulative, (uniforms[:, None] * total.double()).float(), right=True)
    return torch.minimum(picked, torch.searchsorted(cumulative, total)).squeeze(1)


@torch.no_grad()
def sample_token_ids(
    model,
    prompts: list[list[int]],
    draw: Draw,
    pad_id: int,
    end_ids: set[int],
    is_done: Callable[[list[int]], bool] | None = None,
    may_end: torch.Tensor | None = None,
    keys: list[int] | None = None,
    shared_prompt: bool = True,
) -> list[list[int]]:
    """The new token ids of `draw.num_samples` samples of each prompt, prompt-major (prompt 0's samples
    first). A row ends at an end token (kept) or once `is_done(its ids so far)` says so; `is_done` is
    asked only after a token whose id is true in the (vocab,) mask `may_end`, or after every token
    when `may_end` is None. Finished rows leave the batch once an eighth of it has finished. `keys`: one
    integer per prompt that seeds its samples with `draw.seed` (default: its index); a prompt's samples
    are the same in any batch. `shared_prompt=False` copies each prompt's cache to its samples even where the
    model allows the shared-prompt attention (the reference it is tested against)."""
    rows = Decoding.prefill(model, prompts, draw, pad_id, end_ids, keys, shared_prompt)
    with attending(model, rows.shared) if rows.shared is not None else contextlib.nullcontext():
        for step in range(draw.max_new_tokens):
            tokens, running, newly = rows.next_tokens(step, is_done, may_end)
            if bool(rows.finished.all()) or step + 1 == draw.max_new_tokens:
                break
            if int(rows.finished.sum()) * 8 >= len(rows.finished):  # compact: copying the cache costs about a token
                tokens = rows.compact(tokens, running.logical_and(~newly).nonzero().flatten())
            rows.forward(model, tokens, step)
    return [ids[:length] for ids, length in zip(rows.drawn.tolist(), rows.lengths.tolist(), strict=True)]


@dataclass
class Decoding:
    """The state of `sample_token_ids` between steps. Batch rows are the samples still decoding (`live` maps a
    row to its sample index, prompt * n + j); `drawn` and `lengths` are per sample, kept whole."""

    draw: Draw
    keys: list[int]  # per prompt: seeds its samples' uniforms
    width: int  # the prompts' padded length
    logits: torch.Tensor  # (rows, vocab): the next token's logits of each live row
    cache: Cache  # the rows' own tokens (and, without a shared prompt, their prompt's)
    shared: SharedPrompt | None  # each prompt's keys and values once, for its n samples
    mask: torch.Tensor  # (rows, width + max_new_tokens): the attention mask of every step at once
    position: torch.Tensor  # (rows,): the next token's position
    live: torch.Tensor  # batch row -> sample index
    finished: torch.Tensor  # per batch row
    drawn: torch.Tensor  # per sample: its tokens by step
    lengths: torch.Tensor  # per sample: where it ended
    end_mask: torch.Tensor  # (vocab,): the end tokens

    @classmethod
    def prefill(cls, model, prompts, draw: Draw, pad_id: int, end_ids: set[int], keys, shared_prompt: bool):
        """Each prompt through the model once (left-padded), its next-token logits repeated for its n samples."""
        device = next(model.parameters()).device
        width = max(map(len, prompts))
        input_ids = torch.tensor([[pad_id] * (width - len(p)) + p for p in prompts], device=device)
        prompt_mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=device)
        positions = (prompt_mask.cumsum(-1) - 1).clamp(min=0)
        cache = Cache(layer_class_to_replicate=GrowingLayer)
        logits = model(
            input_ids=input_ids,
            attention_mask=prompt_mask,
            position_ids=positions,
            cache=cache,
            use_cache=True,
            logits_to_keep=1,
        ).logits[:, -1]
        n = draw.num_samples
        shared = None
        if shared_prompt and supports_shared_prompt(model):
            # Each prompt's cache is kept once for its n samples; the decode steps' cache holds their own tokens.
            stored = [cast(GrowingLayer, layer).stored() for layer in cache.layers]
            shared = SharedPrompt([k for k, _ in stored], [v for _, v in stored], prompt_mask, n)
            cache = Cache(layer_class_to_replicate=GrowingLayer)
        else:
            cache.batch_repeat_interleave(n)
        logits = logits.repeat_interleave(n, dim=0)
        rows = len(prompts) * n
        mask = torch.ones(rows, width + draw.max_new_tokens, dtype=prompt_mask.dtype, device=device)
        mask[:, :width] = prompt_mask.repeat_interleave(n, dim=0)
        end_mask = torch.zeros(logits.shape[-1], dtype=torch.bool, device=device)
        end_mask[[i for i in end_ids if i < logits.shape[-1]]] = True
        return cls(
            draw,
            list(range(len(prompts))) if keys is None else keys,
            width,
            logits,
            cache,
            shared,
            mask,
            position=positions[:, -1].repeat_interleave(n) + 1,
            live=torch.arange(rows, device=device),
            finished=torch.zeros(rows, dtype=torch.bool, device=device),
            drawn=torch.full((rows, draw.max_new_tokens), pad_id, device=device),
            lengths=torch.full((rows,), draw.max_new_tokens, device=device),
            end_mask=end_mask,
        )

    def next_tokens(self, step: int, is_done, may_end) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Draws step `step`'s token of every row and records it; (tokens, rows running before, rows that
        finished at this token)."""
        n, seed = self.draw.num_samples, self.draw.seed
        uniforms = None if self.draw.temperature == 0 else sample_uniforms(self.live, n, seed, self.keys, step)
        tokens = next_tokens(self.logits, self.draw, uniforms)
        running = ~self.finished
        self.drawn[self.live[running], step] = tokens[running]
        newly = running & self.end_mask[tokens]
        if is_done is not None:
            ask = running & ~newly & (may_end[tokens] if may_end is not None else True)
            for row in ask.nonzero().flatten().tolist():
                if is_done(self.drawn[self.live[row], : step + 1].tolist()):
                    newly[row] = True
        self.lengths[self.live[newly]] = step + 1
        self.finished |= newly
        return tokens, running, newly

    def compact(self, tokens: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Only the rows `keep` stay in the batch; returns their tokens."""
        self.cache.batch_select_indices(keep)
        if self.shared is not None:
            self.shared.keep(self.live[keep])
        self.live, self.position, self.mask = self.live[keep], self.position[keep], self.mask[keep]
        self.finished = self.finished[keep]
        return tokens[keep]

    def forward(self, model, tokens: torch.Tensor, step: int) -> None:
        """The rows' tokens of step `step` through the model: the next step's logits."""
        self.logits = model(
            input_ids=tokens[:, None],
            attention_mask=self.mask[:, : self.width + step + 1],
            position_ids=self.position[:, None],
            cache=self.cache,
            use_cache=True,
        ).logits[:, -1]
        self.position = self.position + 1
