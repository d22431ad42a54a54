"""trainer.packing=shared_prompt: each pair's prompt computed once, no padding, and the same losses,
reference log-probs and gradients as the padded path (trainer.packing=padded)."""

from __future__ import annotations

import pytest
import torch
from conftest import with_lora_and_checkpointing
from omegaconf import OmegaConf

from irpo.config import LossConfig, validate
from irpo.models.loading import load_model, load_tokenizer
from irpo.models.tokens import encode
from irpo.training.logps import encode_pairs, reference_logps
from irpo.training.packing import Group, pack, response_logps
from irpo.training.step import micro_batch_loss

TOLERANCE = {"atol": 1e-5, "rtol": 1.3e-6}  # rtol: float32 sums of ~100 token log-probs in another order


def run_both_paths(model_dir, pairs, loss_name: str, prepare=lambda model: model):
    """(reference log-probs, per-pair losses, logged sums, tokens, gradients) for padded and shared_prompt."""
    tokenizer = load_tokenizer(model_dir)
    loss_cfg = OmegaConf.structured(LossConfig(name=loss_name, alpha=1.0, beta=0.1))
    results = {}
    for packing in ("padded", "shared_prompt"):
        model = prepare(load_model(model_dir))
        data = encode_pairs(tokenizer, pairs, loss_name, packing)
        if data.uses_rejected:
            data.reference = reference_logps(model, data, tokenizer.pad_token_id, "cpu", chunk=6)
        losses, sums, tokens = micro_batch_loss(
            model, list(range(len(pairs))), data, loss_cfg, tokenizer.pad_token_id, "cpu"
        )
        losses.mean().backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
        results[packing] = (data.reference, losses.detach(), sums, tokens, grads)
    return results["padded"], results["shared_prompt"]


def assert_same(padded, packed):
    (ref_a, loss_a, sums_a, tokens_a, grads_a), (ref_b, loss_b, sums_b, tokens_b, grads_b) = padded, packed
    if ref_a is not None:
        torch.testing.assert_close(ref_b, ref_a, **TOLERANCE)
    torch.testing.assert_close(loss_b, loss_a, **TOLERANCE)
    # reward_accuracy compares two rewards that are both 0 up to rounding before any update: noise, not checked
    sums_a.pop("reward_accuracy", None), sums_b.pop("reward_accuracy", None)
    assert sums_b == pytest.approx(sums_a, rel=1e-5, abs=1e-5)
    assert tokens_b == tokens_a  # logged tokens/s count the same tokens whatever the layout
    assert grads_b.keys() == grads_a.keys() and all(g is not None for g in grads_a.values())
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], **TOLERANCE, msg=lambda m, n=name: f"{n}: {m}")


def test_dpo_nll_loss_reference_and_gradients_match_the_padded_path(untrained_tiny, task_pairs):
    padded, packed = run_both_paths(untrained_tiny, task_pairs, "dpo_nll")
    assert_same(padded, packed)
    assert float(padded[1].std()) > 0  # the pairs differ: a layout that mixed them up would show


def test_sft_loss_and_monitored_rejected_log_probs_match_the_padded_path(untrained_tiny, task_pairs):
    padded, packed = run_both_paths(untrained_tiny, task_pairs, "sft")
    assert_same(padded, packed)
    assert "rejected_logps" in packed[2]


def test_lora_with_gradient_checkpointing_matches_the_padded_path(untrained_tiny, task_pairs):
    padded, packed = run_both_paths(untrained_tiny, task_pairs[:4], "dpo_nll", with_lora_and_checkpointing)
    assert_same(padded, packed)
    assert all("lora_" in name for name in packed[4])


def test_rejected_response_does_not_see_the_chosen_one(untrained_tiny):
    """Changing the chosen response changes its own log-prob and never the rejected one's; the rejected
    response's positions restart after the prompt, so it scores as if it followed the prompt directly."""
    tokenizer = load_tokenizer(untrained_tiny)
    model = load_model(untrained_tiny)
    prompt = encode(tokenizer, "Question: What is 3 + 4?\nAnswer:", "")
    prompt_ids = prompt.input_ids[: prompt.response_start]
    rejected = tokenizer(" 3 + 4 = 8", add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        alone = response_logps(model, [Group(prompt_ids, [rejected])], tokenizer.pad_token_id, "cpu")
        scores = [
            response_logps(
                model,
                [Group(prompt_ids, [tokenizer(chosen, add_special_tokens=False)["input_ids"], rejected])],
                tokenizer.pad_token_id,
                "cpu",
            )
            for chosen in (" 3 + 4 = 7", " seven, a much longer answer than the other")
        ]
    assert abs(float(scores[0][0] - scores[1][0])) > 1e-3
    torch.testing.assert_close(scores[0][1], alone[0], **TOLERANCE)
    torch.testing.assert_close(scores[1][1], alone[0], **TOLERANCE)


def test_groups_share_rows_without_padding_between_them():
    groups = [Group([1, 2, 3], [[4, 5], [6]]), Group([7], [[8]]), Group([9, 9], [[5]])]  # lengths 6, 2, 3
    batch = pack(groups, pad_id=0, dtype=torch.float32)
    assert batch.input_ids.tolist() == [[1, 2, 3, 4, 5, 6], [9, 9, 5, 7, 8, 0]]
    assert batch.position_ids.tolist() == [[0, 1, 2, 3, 4, 3], [0, 1, 2, 0, 1, 0]]
    allowed = batch.attention_mask[:, 0] == 0
    assert allowed[0, 5].tolist() == [True, True, True, False, False, True]  # rejected: prompt and itself
    assert allowed[1, 4].tolist() == [False, False, False, True, True, False]  # second group: its own tokens
    # each response token is predicted from the position before it; both responses' first from the prompt's end
    assert batch.source_col.tolist() == [2, 3, 2, 1, 3]
    assert batch.targets.tolist() == [4, 5, 6, 5, 8]
    assert batch.response_index.tolist() == [0, 0, 1, 3, 2]


def test_unknown_packing_fails_at_config_time(make_config):
    with pytest.raises(ValueError, match="trainer.packing 'zip'; valid values: shared_prompt, padded"):
        validate(make_config("trainer.packing=zip"))
