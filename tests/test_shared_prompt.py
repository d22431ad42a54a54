"""The shared-prompt decode attention (irpo/sampling/shared_prompt.py) and the inverse-CDF draw, on a real
grouped-query Llama (2 key/value heads for 6 query heads, as SmolLM2 has 3 for 9) and on the tiny model."""

from __future__ import annotations

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM

from irpo.models.loading import load_tokenizer
from irpo.sampling.decode import Draw, next_tokens, sample_token_ids, warped_scores
from irpo.sampling.shared_prompt import (
    SharedPrompt,
    attention_with_lse,
    plain_attention_with_lse,
    supports_shared_prompt,
)

PROMPTS = [
    "Question: What is 7 + 5?\nSolution:",
    "Q: 3 - 1?\nA:",
    "Question: Ivy has 12 coins. She sells 4.\nSolution:",
    "Q: 10 / 2?\nA:",
]


def grouped_query_llama(vocab_size: int) -> LlamaForCausalLM:
    """A real Llama with grouped-query attention, weights drawn wide so its greedy text varies by row."""
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=96,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=256,
        pad_token_id=0,
    )
    model = LlamaForCausalLM(config).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model


@pytest.fixture(scope="module")
def gqa(untrained_tiny):
    tokenizer = load_tokenizer(untrained_tiny)
    return grouped_query_llama(len(tokenizer)), tokenizer


def test_grouped_query_samples_equal_the_copied_cache_path_through_compaction_and_dropped_prompts(gqa):
    """At a temperature near 0 a prompt's samples all end together, so whole prompts leave the batch; rows
    ending at different steps compact it. Token for token, both attentions give the same samples."""
    model, tokenizer = gqa
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    free = sample_token_ids(model, prompts, Draw(1, 0.0, 1.0, 30, seed=0), tokenizer.pad_token_id, set())
    end_id = max({t for row in free for t in row[2:]}, key=lambda t: sum(row.count(t) for row in free))
    draw = Draw(3, 1e-6, 1.0, 30, seed=2)
    shared = sample_token_ids(model, prompts, draw, tokenizer.pad_token_id, {end_id})
    copied = sample_token_ids(model, prompts, draw, tokenizer.pad_token_id, {end_id}, shared_prompt=False)
    assert len({len(row) for row in shared}) > 1, "rows should end at different steps"
    assert shared == copied


def test_grouped_query_greedy_is_generates_greedy(gqa):
    model, tokenizer = gqa
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    width = max(map(len, prompts))
    pad = tokenizer.pad_token_id
    with torch.no_grad():
        out = model.generate(
            input_ids=torch.tensor([[pad] * (width - len(p)) + p for p in prompts]),
            attention_mask=torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts]),
            do_sample=False,
            max_new_tokens=20,
            pad_token_id=pad,
            eos_token_id=-1,
        )
    drawn = sample_token_ids(model, prompts, Draw(1, 0.0, 1.0, 20, seed=0), pad, set())
    assert drawn == out[:, width:].tolist()


def test_attention_restores_the_models_own_implementation_even_after_an_error(gqa):
    model, tokenizer = gqa
    before = model.config._attn_implementation

    def fails(ids: list[int]) -> bool:
        raise RuntimeError("stop here")

    with pytest.raises(RuntimeError, match="stop here"):
        sample_token_ids(
            model, [tokenizer("Q: 1?").input_ids], Draw(2, 1.0, 1.0, 5, 0), tokenizer.pad_token_id, set(), fails
        )
    assert model.config._attn_implementation == before


def test_the_block_attention_equals_plain_softmax_over_prompt_and_own_tokens_with_rows_gone():
    """attend() against softmax attention written out, per row, with padding in the prompts, after rows and a
    whole prompt have left the batch."""
    generator = torch.Generator().manual_seed(0)
    prompts, n, kv_heads, group, dim, prompt_len, own_len = 3, 4, 2, 3, 8, 7, 5
    keys = [torch.randn(prompts, kv_heads, prompt_len, dim, generator=generator)]
    values = [torch.randn(prompts, kv_heads, prompt_len, dim, generator=generator)]
    prompt_mask = torch.ones(prompts, prompt_len, dtype=torch.long)
    prompt_mask[0, :3] = 0  # left padding
    shared = SharedPrompt(keys, values, prompt_mask, n)
    live = torch.tensor([0, 2, 3, 9, 11])  # prompt 1 has finished all of its samples
    shared.keep(live)
    rows = len(live)
    query = torch.randn(rows, kv_heads * group, 1, dim, generator=generator)
    own_keys = torch.randn(rows, kv_heads, own_len, dim, generator=generator)
    own_values = torch.randn(rows, kv_heads, own_len, dim, generator=generator)
    out = shared.attend(0, query, own_keys, own_values, scale=dim**-0.5)

    for row, sample in enumerate(live.tolist()):
        prompt = sample // n
        valid = prompt_mask[prompt].bool()
        for head in range(kv_heads * group):
            kv = head // group
            k = torch.cat([keys[0][prompt, kv][valid], own_keys[row, kv]])
            v = torch.cat([values[0][prompt, kv][valid], own_values[row, kv]])
            weights = (query[row, head, 0] @ k.T * dim**-0.5).softmax(-1)
            torch.testing.assert_close(out[row, 0, head], weights @ v, atol=1e-5, rtol=1e-5)


def test_the_cpu_kernel_and_the_plain_operations_agree():
    generator = torch.Generator().manual_seed(1)
    query = torch.randn(2, 3, 6, 16, generator=generator)
    keys, values = torch.randn(2, 3, 9, 16, generator=generator), torch.randn(2, 3, 9, 16, generator=generator)
    bias = torch.zeros(2, 1, 1, 9).masked_fill(torch.arange(9) < 2, float("-inf")).expand(2, 3, 6, 9)
    fused, fused_lse = attention_with_lse(query, keys, values, bias, 0.25)
    plain, plain_lse = plain_attention_with_lse(query, keys, values, bias, 0.25)
    torch.testing.assert_close(fused, plain, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(fused_lse, plain_lse, atol=1e-5, rtol=1e-5)


def test_a_sliding_window_model_keeps_the_copied_cache():
    def mistral(window):
        config = MistralConfig(
            vocab_size=32,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=1,
            num_attention_heads=4,
            num_key_value_heads=2,
            sliding_window=window,
        )
        return MistralForCausalLM(config).eval()

    assert not supports_shared_prompt(mistral(4))
    assert supports_shared_prompt(mistral(None))
    model = mistral(4)
    drawn = sample_token_ids(model, [[1, 5, 6, 7, 8, 9]], Draw(2, 1.0, 1.0, 8, seed=0), 0, set())
    assert [len(row) for row in drawn] == [8, 8]


def test_the_draw_never_picks_a_token_outside_the_nucleus_at_either_end_of_the_unit_interval():
    """u = 0 and u just below 1 are the edges of the inverse CDF: both must land on tokens with mass. The
    first and last tokens of the vocabulary are outside the top-p nucleus here."""
    logits = torch.tensor([[-9.0, 2.0, 3.0, 2.5, -9.0], [5.0, -9.0, -9.0, -9.0, -9.0]])
    draw = Draw(1, 1.0, 0.9, 1, seed=0)
    allowed = warped_scores(logits, draw) > float("-inf")
    for u in (0.0, 1.0 - 2.0**-53, 0.5):
        tokens = next_tokens(logits, draw, torch.full((2,), u, dtype=torch.float64))
        assert allowed[torch.arange(2), tokens].all(), (u, tokens)
    low = next_tokens(logits, draw, torch.zeros(2, dtype=torch.float64))
    high = next_tokens(logits, draw, torch.full((2,), 1.0 - 2.0**-53, dtype=torch.float64))
    assert low.tolist() == [1, 0] and high.tolist() == [3, 0]
