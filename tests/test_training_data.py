"""What a trainer learns from: the response mask over encoded (prompt, response) pairs, and the lr schedule."""

from __future__ import annotations

from itertools import pairwise
from types import SimpleNamespace

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from irpo.models.tokens import encode
from irpo.training.data import collate, sequence_logps
from irpo.training.optim import lr_multiplier

PROMPT = "Question: What is 3 + 4?\nAnswer:"
RESPONSE = " 3 + 4 = 7\nFinal answer: 7"


@pytest.fixture(scope="module")
def tokenizer(untrained_tiny):
    return AutoTokenizer.from_pretrained(untrained_tiny)


def test_encoding_is_prompt_then_response_then_eos_and_never_truncated(tokenizer):
    seq = encode(tokenizer, PROMPT, RESPONSE)
    prompt_ids = tokenizer(PROMPT)["input_ids"]
    response_ids = tokenizer(RESPONSE, add_special_tokens=False)["input_ids"]
    assert prompt_ids[0] == tokenizer.bos_token_id
    assert seq.input_ids == prompt_ids + response_ids + [tokenizer.eos_token_id]
    assert seq.response_start == len(prompt_ids) and seq.response_length == len(response_ids) + 1
    # A prompt that already starts with BOS (a chat template's) gets no second one.
    assert encode(tokenizer, tokenizer.bos_token + PROMPT, RESPONSE).input_ids == seq.input_ids
    # Over-long pairs are dropped by their full length (pairs' `fits`), so encoding must not cut them.
    long_response = " 1 + 1 = 2" * 200
    assert encode(tokenizer, PROMPT, long_response).response_length == len(long_response) + 1


def test_batch_masks_the_prompt_and_padding_and_keeps_the_response_with_its_eos(tokenizer):
    short, long = encode(tokenizer, PROMPT, " 7"), encode(tokenizer, PROMPT, RESPONSE)
    batch = collate([short, long], pad_id=tokenizer.pad_token_id)
    width = len(long.input_ids)
    assert batch["input_ids"].shape == batch["response_mask"].shape == (2, width)
    expected_mask = [
        [False] * short.response_start + [True] * short.response_length + [False] * (width - len(short.input_ids)),
        [False] * long.response_start + [True] * long.response_length,
    ]
    assert batch["response_mask"].tolist() == expected_mask
    assert batch["attention_mask"][0].tolist() == [1] * len(short.input_ids) + [0] * (width - len(short.input_ids))
    assert batch["input_ids"][0, len(short.input_ids) :].eq(tokenizer.pad_token_id).all()
    assert batch["input_ids"][0, len(short.input_ids) - 1] == tokenizer.eos_token_id


def test_sequence_logps_sum_exactly_the_response_tokens(untrained_tiny, tokenizer):
    model = AutoModelForCausalLM.from_pretrained(untrained_tiny).eval()
    sequences = [encode(tokenizer, PROMPT, " 7"), encode(tokenizer, "Q: 1 + 1?\nA:", RESPONSE)]
    with torch.no_grad():
        batched = sequence_logps(model, collate(sequences, pad_id=tokenizer.pad_token_id))
        # By hand, one unpadded sequence at a time: log p(token | everything before it), response tokens only.
        by_hand = []
        for seq in sequences:
            ids = torch.tensor([seq.input_ids])
            logps = torch.log_softmax(model(input_ids=ids).logits[0].float(), dim=-1)
            by_hand.append(sum(logps[i - 1, seq.input_ids[i]] for i in range(seq.response_start, len(seq.input_ids))))
        # What padding holds does not matter: it is masked.
        other_padding = sequence_logps(model, collate(sequences, pad_id=tokenizer.eos_token_id))
    torch.testing.assert_close(batched, torch.stack(by_hand), rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(other_padding, batched, rtol=1e-5, atol=1e-4)


def schedule(name: str, warmup: int, total: int) -> list[float]:
    multiplier = lr_multiplier(SimpleNamespace(lr_schedule=name, warmup_steps=warmup), total)
    return [multiplier(step) for step in range(total + 1)]


def test_warmup_rises_linearly_then_the_constant_schedule_holds():
    assert schedule("constant", warmup=4, total=8) == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
    assert schedule("constant", warmup=0, total=3) == [1.0] * 4


def test_cosine_decays_from_the_end_of_warmup_to_zero_at_the_last_step():
    values = schedule("cosine", warmup=2, total=10)
    assert values[:3] == [0.5, 1.0, 1.0]  # warmup, then the decay starts at its peak
    assert values[6] == pytest.approx(0.5)  # halfway through the decay
    assert values[10] == pytest.approx(0.0, abs=1e-12)
    assert all(a > b for a, b in pairwise(values[2:]))
    # Past the budget (a resumed run's extra step) it stays at zero rather than rising again.
    assert lr_multiplier(SimpleNamespace(lr_schedule="cosine", warmup_steps=0), 4)(6) == pytest.approx(0.0, abs=1e-12)


def test_unknown_schedule_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown trainer.lr_schedule 'linear'; valid schedules: constant, cosine"):
        lr_multiplier(SimpleNamespace(lr_schedule="linear", warmup_steps=0), 10)
