"""The sampling loop (irpo/sampling/decode.py) against transformers' `generate` on the real tiny model."""

from __future__ import annotations

import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopPLogitsWarper

from irpo.models.loading import load_model, load_tokenizer
from irpo.sampling.decode import Draw, sample_token_ids, warped_scores

PROMPTS = [
    "Question: What is 7 + 5?\nSolution:",
    "Q: 3 - 1?\nA:",
    "Question: Ivy has 12 coins. She sells 4.\nSolution:",
]


def load(model_dir):
    """The tiny Llama with weights drawn wide enough that its greedy text varies from row to row (freshly
    initialised it repeats one character), so rows end at different steps."""
    model = load_model(model_dir, "float32", "cpu").eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)
    return model, load_tokenizer(model_dir)


def generate_greedy(model, tokenizer, prompts: list[list[int]], end_id: int, max_new: int) -> list[list[int]]:
    width = max(map(len, prompts))
    ids = torch.tensor([[tokenizer.pad_token_id] * (width - len(p)) + p for p in prompts])
    mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
    with torch.no_grad():
        out = model.generate(
            input_ids=ids,
            attention_mask=mask,
            do_sample=False,
            max_new_tokens=max_new,
            pad_token_id=tokenizer.pad_token_id,
            eos_token_id=end_id,
        )
    rows = []
    for row in out[:, width:].tolist():
        rows.append(row[: row.index(end_id) + 1] if end_id in row else row)
    return rows


def test_greedy_is_generates_greedy_token_for_token_with_rows_ending_at_different_steps(untrained_tiny):
    model, tokenizer = load(untrained_tiny)
    prompts = [tokenizer(p).input_ids for p in PROMPTS * 6]  # left padding: three lengths
    free = generate_greedy(model, tokenizer, prompts, end_id=-1, max_new=40)
    # End at a token the untrained model does emit, so rows finish at different steps and leave the batch.
    end_id = max({t for row in free for t in row[5:]}, key=lambda t: sum(row.count(t) for row in free))
    expected = generate_greedy(model, tokenizer, prompts, end_id=end_id, max_new=40)
    assert len({len(row) for row in expected}) > 1, "rows should end at different steps"
    drawn = sample_token_ids(model, prompts, Draw(1, 0.0, 1.0, 40, seed=0), tokenizer.pad_token_id, {end_id})
    assert drawn == expected


def test_each_sample_keeps_its_own_cache_through_the_shared_prefill_and_the_compaction(untrained_tiny):
    """At a temperature near 0 every one of a prompt's samples is its greedy text: the prompt's cache,
    shared by its samples and compacted as rows end, still serves each row its own keys and values."""
    model, tokenizer = load(untrained_tiny)
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    free = generate_greedy(model, tokenizer, prompts, end_id=-1, max_new=30)
    end_id = max({t for row in free for t in row[3:]}, key=lambda t: sum(row.count(t) for row in free))
    greedy = generate_greedy(model, tokenizer, prompts, end_id=end_id, max_new=30)
    drawn = sample_token_ids(model, prompts, Draw(4, 1e-6, 1.0, 30, seed=3), tokenizer.pad_token_id, {end_id})
    assert drawn == [row for row in greedy for _ in range(4)]


def test_first_tokens_follow_the_models_distribution(untrained_tiny):
    model, tokenizer = load(untrained_tiny)
    prompt = tokenizer(PROMPTS[0]).input_ids
    with torch.no_grad():
        probs = (model(input_ids=torch.tensor([prompt])).logits[0, -1] / 1.5).softmax(-1)
    drawn = sample_token_ids(model, [prompt], Draw(4000, 1.5, 1.0, 1, seed=0), tokenizer.pad_token_id, set())
    counts = torch.bincount(torch.tensor([row[0] for row in drawn]), minlength=len(probs)).float()
    assert 0.5 * (counts / 4000 - probs).abs().sum() < 0.05  # total variation; ~0.03 is sampling noise


def test_warped_scores_are_generates_temperature_and_top_p():
    logits = torch.randn(6, 50, generator=torch.Generator().manual_seed(0)) * 3
    for temperature, top_p in [(0.7, 1.0), (1.3, 0.9), (0.8, 0.5), (1.0, 0.01)]:
        hf = TopPLogitsWarper(top_p)(None, TemperatureLogitsWarper(temperature)(None, logits.clone()))
        ours = warped_scores(logits, Draw(1, temperature, top_p, 1, seed=0))
        torch.testing.assert_close(ours.softmax(-1), hf.softmax(-1))


def test_a_seed_gives_the_same_samples_and_leaves_torchs_random_stream_alone(untrained_tiny):
    model, tokenizer = load(untrained_tiny)
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    draw = Draw(3, 1.0, 0.95, 16, seed=11)
    before = torch.random.get_rng_state()
    first = sample_token_ids(model, prompts, draw, tokenizer.pad_token_id, set())
    assert torch.equal(torch.random.get_rng_state(), before)
    assert sample_token_ids(model, prompts, draw, tokenizer.pad_token_id, set()) == first
    other = sample_token_ids(model, prompts, Draw(3, 1.0, 0.95, 16, seed=12), tokenizer.pad_token_id, set())
    assert other != first


def test_is_done_ends_a_row_at_the_token_it_approves_and_is_asked_only_where_may_end_allows(untrained_tiny):
    model, tokenizer = load(untrained_tiny)
    prompts = [tokenizer(p).input_ids for p in PROMPTS]
    draw = Draw(4, 1.0, 1.0, 30, seed=5)
    free = sample_token_ids(model, prompts, draw, tokenizer.pad_token_id, set())
    stop_token = max({t for row in free for t in row}, key=lambda t: sum(row.count(t) for row in free))
    asked: list[int] = []

    def done(ids: list[int]) -> bool:
        asked.append(ids[-1])
        return ids.count(stop_token) == 2  # the second time the token comes

    may_end = torch.zeros(tokenizer.vocab_size + 8, dtype=torch.bool)
    may_end[stop_token] = True
    ended = sample_token_ids(model, prompts, draw, tokenizer.pad_token_id, set(), done, may_end)
    assert set(asked) == {stop_token}
    for full, cut in zip(free, ended, strict=True):
        if full.count(stop_token) >= 2:
            second = [i for i, t in enumerate(full) if t == stop_token][1]
            assert cut == full[: second + 1]  # the same draw up to there: finished rows do not move others
        else:
            assert cut == full
