"""Encoded pairs and their response log-probs: the policy's (with grad where the loss reads them) and the frozen
reference model's (once, before any update), in either packing (irpo/training/packing.py)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from irpo.loss import LOSSES
from irpo.models.tokens import EncodedSequence, encode
from irpo.training.data import collate, sequence_logps
from irpo.training.packing import check_packing, pair_groups, response_logps, single_groups


@dataclass
class PairData:
    """Encoded pairs and, for preference losses, the reference model's log-probs of both sides."""

    chosen: list[EncodedSequence]
    rejected: list[EncodedSequence] | None
    uses_rejected: bool  # the loss needs rejected sequences (else they are only scored for the logs)
    reference: dict[str, torch.Tensor] | None = None
    packing: str = "padded"  # trainer.packing: how forward passes lay the sequences out (irpo/training/packing.py)
    logprob_chunk_size: int = 0  # trainer.logprob_chunk_size: 0 = full logits (irpo/training/logprobs.py)

    def subset(self, indices) -> PairData:
        """The pairs at `indices`, without reference log-probs."""
        rejected = [self.rejected[i] for i in indices] if self.rejected is not None else None
        chosen = [self.chosen[i] for i in indices]
        return PairData(
            chosen, rejected, self.uses_rejected, packing=self.packing, logprob_chunk_size=self.logprob_chunk_size
        )


def encode_pairs(
    tokenizer, pairs: list[dict], loss_name: str, packing: str = "padded", logprob_chunk_size: int = 0
) -> PairData:
    check_packing(packing)
    objective = LOSSES.get(loss_name)
    chosen = [encode(tokenizer, p["prompt"], p["chosen"]) for p in pairs]
    rejected = [encode(tokenizer, p["prompt"], p["rejected"]) for p in pairs] if "rejected" in pairs[0] else None
    if objective.uses_rejected and rejected is None:
        raise ValueError(f"loss '{objective.name}' needs (chosen, rejected) pairs; pairs.builder made none")
    return PairData(chosen, rejected, objective.uses_rejected, packing=packing, logprob_chunk_size=logprob_chunk_size)


@torch.no_grad()
def score_sequences(
    model, sequences: list[EncodedSequence], pad_id: int, device, chunk: int, logprob_chunk_size: int = 0
) -> torch.Tensor:
    """Summed response log-probs of each sequence, `chunk` sequences per right-padded forward pass, on the CPU."""
    values = [
        separate_logps(model, sequences[i : i + chunk], "padded", pad_id, device, logprob_chunk_size).cpu()
        for i in range(0, len(sequences), chunk)
    ]
    return torch.cat(values) if values else torch.zeros(0)


@torch.no_grad()
def reference_logps(model, data: PairData, pad_id: int, device, chunk: int) -> dict[str, torch.Tensor]:
    """Summed response log-probs of both sides of every pair (on the CPU), `chunk` sequences per forward;
    with shared-prompt packing each pair's prompt is computed once."""
    if data.rejected is None:
        raise ValueError("reference log-probs are for preference pairs, and these pairs have no rejected side")
    if data.packing == "padded":
        return {
            side: score_sequences(model, sequences, pad_id, device, chunk, data.logprob_chunk_size)
            for side, sequences in (("chosen", data.chosen), ("rejected", data.rejected))
        }
    per_forward = max(1, chunk // 2)
    values = [
        response_logps(
            model,
            pair_groups(data.chosen[i : i + per_forward], data.rejected[i : i + per_forward]),
            pad_id,
            device,
            data.logprob_chunk_size,
        ).cpu()
        for i in range(0, len(data.chosen), per_forward)
    ]
    both = torch.cat(values)  # chosen and rejected of each pair, alternating
    return {"chosen": both[0::2], "rejected": both[1::2]}


def policy_logps(model, idx: list[int], data: PairData, pad_id: int, device):
    """Summed response log-probs of the chosen and rejected sides of pairs `idx`, each (len(idx),): with
    grad where the loss reads them; rejected without grad (monitored only, as in the paper's SFT curves)
    when the loss does not, and None when there are no rejected responses."""
    chosen = [data.chosen[i] for i in idx]
    rejected = [data.rejected[i] for i in idx] if data.rejected is not None else None
    if data.uses_rejected and rejected is None:
        raise ValueError("the loss compares chosen with rejected responses, and these pairs have none")
    if data.uses_rejected and rejected is not None and data.packing == "shared_prompt":
        both = response_logps(model, pair_groups(chosen, rejected), pad_id, device, data.logprob_chunk_size)
        return both[0::2], both[1::2]
    if data.uses_rejected and rejected is not None:
        both = separate_logps(model, chosen + rejected, data.packing, pad_id, device, data.logprob_chunk_size)
        return both[: len(idx)], both[len(idx) :]
    chosen_logps = separate_logps(model, chosen, data.packing, pad_id, device, data.logprob_chunk_size)
    if rejected is None:
        return chosen_logps, None
    with torch.no_grad():
        return chosen_logps, separate_logps(model, rejected, data.packing, pad_id, device, data.logprob_chunk_size)


def separate_logps(
    model, sequences: list[EncodedSequence], packing: str, pad_id: int, device, logprob_chunk_size: int = 0
) -> torch.Tensor:
    """Summed response log-probs of each sequence scored alone: a right-padded batch, or packed rows."""
    if packing == "padded":
        return sequence_logps(model, to_device(collate(sequences, pad_id), device), logprob_chunk_size)
    return response_logps(model, single_groups(sequences), pad_id, device, logprob_chunk_size)


def to_device(batch: dict[str, torch.Tensor], device) -> dict[str, torch.Tensor]:
    return {k: v.to(device) for k, v in batch.items()}
