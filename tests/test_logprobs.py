"""trainer.logprob_chunk_size: response log-probs from the output layer a chunk of positions at a time, logits
recomputed in backward (irpo/training/logprobs.py), against the full logits: the same log-probs, losses and
gradients of every parameter, within float32 rounding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from conftest import with_lora_and_checkpointing
from omegaconf import OmegaConf

from irpo.config import LossConfig, validate
from irpo.models.loading import load_model, load_tokenizer
from irpo.training import logprobs
from irpo.training.logprobs import ChunkedTokenLogps, token_logps
from irpo.training.logps import encode_pairs, reference_logps
from irpo.training.step import micro_batch_loss

TOLERANCE = {"atol": 1e-5, "rtol": 1.3e-6}  # rtol: float32 sums of ~100 token log-probs in another order


def full_logps(hidden, weight, bias, targets):
    """The plain computation: every logit, log-softmax in float32, the targets' entries."""
    return torch.log_softmax(F.linear(hidden, weight, bias).float(), -1).gather(-1, targets[:, None]).squeeze(-1)


def random_head():
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(13, 8, generator=generator).requires_grad_()
    weight = torch.randn(50, 8, generator=generator).requires_grad_()
    bias = torch.randn(50, generator=generator).requires_grad_()
    targets = torch.randint(0, 50, (13,), generator=generator)
    return hidden, weight, bias, targets


def values_and_grads(function, hidden, weight, bias, targets):
    upstream = torch.linspace(-1.0, 2.0, len(targets))
    out = function(hidden, weight, bias, targets)
    grads = torch.autograd.grad((out * upstream.to(out.dtype)).sum(), (hidden, weight, bias))
    return out.detach(), grads


@pytest.mark.parametrize("vocab_block", [7, 50, 8192])
@pytest.mark.parametrize("chunk_size", [1, 4, 13, 100])
def test_chunks_give_the_full_log_softmax_and_its_gradients(chunk_size, vocab_block, monkeypatch):
    monkeypatch.setattr(logprobs, "VOCAB_BLOCK", vocab_block)  # 50 entries: 8 blocks, 1, 1
    head = random_head()
    expected = values_and_grads(full_logps, *head)
    chunked = values_and_grads(lambda h, w, b, t: ChunkedTokenLogps.apply(h, w, b, t, chunk_size, torch.float32), *head)
    torch.testing.assert_close(chunked[0], expected[0])
    for got, want in zip(chunked[1], expected[1], strict=True):
        torch.testing.assert_close(got, want)


def test_under_bf16_autocast_the_matmuls_run_in_bfloat16_and_the_log_softmax_in_float32(monkeypatch):
    """As today's path: autocast's Linear in bfloat16, then log_softmax(logits.float())."""
    monkeypatch.setattr(logprobs, "VOCAB_BLOCK", 16)
    head = random_head()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast_full = values_and_grads(full_logps, *head)
        chunked = values_and_grads(lambda h, w, b, t: ChunkedTokenLogps.apply(h, w, b, t, 4, torch.bfloat16), *head)
    float32 = values_and_grads(full_logps, *head)
    assert chunked[0].dtype == torch.float32
    torch.testing.assert_close(chunked[0], autocast_full[0], atol=1e-6, rtol=1e-6)  # the same bf16 logits
    assert (chunked[0] - float32[0]).abs().max() > 1e-3  # ... which float32 matmuls would not give
    for got, want in zip(chunked[1], autocast_full[1], strict=True):
        torch.testing.assert_close(got, want, atol=2e-2, rtol=2e-2)  # bf16 gradients summed in another order


def run_paths(model_dir, pairs, loss_name: str, packing: str, chunk_size: int, prepare=lambda model: model):
    """{chunk: (reference log-probs, per-pair losses, logged sums, gradients)} for full logits and chunked."""
    tokenizer = load_tokenizer(model_dir)
    loss_cfg = OmegaConf.structured(LossConfig(name=loss_name, alpha=1.0, beta=0.1))
    results = {}
    for chunk in (0, chunk_size):
        model = prepare(load_model(model_dir))
        data = encode_pairs(tokenizer, pairs, loss_name, packing, chunk)
        if data.uses_rejected:
            data.reference = reference_logps(model, data, tokenizer.pad_token_id, "cpu", chunk=4)
        losses, sums, _ = micro_batch_loss(
            model, list(range(len(pairs))), data, loss_cfg, tokenizer.pad_token_id, "cpu"
        )
        losses.mean().backward()
        grads = {name: p.grad for name, p in model.named_parameters() if p.requires_grad}
        results[chunk] = (data.reference, losses.detach(), sums, grads)
    return results[0], results[chunk_size]


def assert_same(full, chunked, tolerance=TOLERANCE, gradient_scale: float = 1e-5):
    (ref_a, loss_a, sums_a, grads_a), (ref_b, loss_b, sums_b, grads_b) = full, chunked
    if ref_a is not None:
        for side in ("chosen", "rejected"):
            torch.testing.assert_close(ref_b[side], ref_a[side], **tolerance)
    torch.testing.assert_close(loss_b, loss_a, **tolerance)
    sums_a.pop("reward_accuracy", None), sums_b.pop("reward_accuracy", None)  # a threshold on rounding noise
    assert sums_b == pytest.approx(sums_a, rel=1e-5, abs=1e-5)
    assert grads_b.keys() == grads_a.keys() and all(g is not None for g in grads_b.values())
    for name in grads_a:
        scale = {"atol": gradient_scale * max(1.0, float(grads_a[name].abs().max()))}  # large sums: their size
        torch.testing.assert_close(
            grads_b[name], grads_a[name], **{**tolerance, **scale}, msg=lambda m, n=name: f"{n}: {m}"
        )


@pytest.mark.parametrize("packing", ["shared_prompt", "padded"])
@pytest.mark.parametrize("loss_name", ["dpo_nll", "sft"])
def test_losses_reference_and_every_gradient_equal_the_full_logits(
    untrained_tiny, task_pairs, loss_name, packing, monkeypatch
):
    monkeypatch.setattr(logprobs, "VOCAB_BLOCK", 32)  # the character vocabulary in several blocks
    full, chunked = run_paths(untrained_tiny, task_pairs, loss_name, packing, chunk_size=7)
    assert_same(full, chunked)
    model = load_model(untrained_tiny)
    assert model.get_output_embeddings().weight is model.get_input_embeddings().weight  # tied: one gradient
    assert float(chunked[3]["model.embed_tokens.weight"].abs().max()) > 0


def test_lora_with_gradient_checkpointing_equals_the_full_logits(untrained_tiny, task_pairs):
    for packing in ("shared_prompt", "padded"):
        full, chunked = run_paths(untrained_tiny, task_pairs[:4], "dpo_nll", packing, 5, with_lora_and_checkpointing)
        assert_same(full, chunked)
        assert chunked[3] and all("lora_" in name for name in chunked[3])


class ScaledLogits(torch.nn.Module):
    """A model that changes its logits after the output layer (as logit soft-capping does)."""

    def __init__(self, inner):
        super().__init__()
        self.inner = inner

    def get_output_embeddings(self):
        return self.inner.get_output_embeddings()

    def forward(self, **inputs):
        out = self.inner(**inputs)
        out.logits = out.logits * 2
        return out


def test_a_model_that_changes_its_logits_after_the_output_layer_is_refused(untrained_tiny):
    model = ScaledLogits(load_model(untrained_tiny))
    inputs = {"input_ids": torch.tensor([[5, 6, 7]]), "attention_mask": torch.ones(1, 3, dtype=torch.long)}
    with pytest.raises(RuntimeError, match="logprob_chunk_size=0"):
        token_logps(model, inputs, torch.tensor([0, 1]), torch.tensor([6, 7]), chunk_size=2)
    assert "forward" not in model.get_output_embeddings().__dict__  # the layer is itself again


def test_bad_chunk_sizes_and_lora_on_the_output_layer_fail_at_config_time(make_config):
    with pytest.raises(ValueError, match="logprob_chunk_size must be >= 0"):
        validate(make_config("trainer.logprob_chunk_size=-1"))
    with pytest.raises(ValueError, match="adapts lm_head"):
        validate(make_config("trainer.lora.rank=4", "trainer.lora.target_modules=[q_proj,lm_head]"))
    validate(
        make_config(
            "trainer.lora.rank=4", "trainer.lora.target_modules=[q_proj,lm_head]", "trainer.logprob_chunk_size=0"
        )
    )
