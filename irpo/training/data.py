"""Batches of encoded (prompt, response) sequences (irpo.models.tokens) and their response log-probs."""

from __future__ import annotations

import torch

from irpo.models.tokens import EncodedSequence
from irpo.training import logprobs


def collate(sequences: list[EncodedSequence], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded batch: input_ids, attention_mask and response_mask, all of shape (B, T)."""
    width = max(len(s.input_ids) for s in sequences)
    input_ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    attention_mask = torch.zeros((len(sequences), width), dtype=torch.long)
    response_mask = torch.zeros((len(sequences), width), dtype=torch.bool)
    for row, seq in enumerate(sequences):
        n = len(seq.input_ids)
        input_ids[row, :n] = torch.tensor(seq.input_ids)
        attention_mask[row, :n] = 1
        response_mask[row, seq.response_start : n] = True
    return {"input_ids": input_ids, "attention_mask": attention_mask, "response_mask": response_mask}


def sequence_logps(model, batch: dict[str, torch.Tensor], chunk_size: int = 0) -> torch.Tensor:
    """Sum of log πθ(y_i | x, y_<i) over response tokens, shape (B,). Prompt and padding are masked.
    chunk_size > 0: the output layer only at the positions that predict a response token, that many positions
    at a time, without the full logits (irpo/training/logprobs.py); 0: full logits at every position."""
    if chunk_size:
        scored = batch["response_mask"][:, 1:]
        row, col = scored.nonzero(as_tuple=True)
        inputs = {"input_ids": batch["input_ids"], "attention_mask": batch["attention_mask"]}
        targets = batch["input_ids"][:, 1:][scored]
        logps = logprobs.token_logps(model, inputs, row * batch["input_ids"].shape[1] + col, targets, chunk_size)
        return torch.zeros(len(scored), dtype=torch.float32, device=logps.device).index_add(0, row, logps)
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * batch["response_mask"][:, 1:]).sum(-1)
