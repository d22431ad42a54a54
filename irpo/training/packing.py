"""Shared-prompt packing: a pair's prompt is computed once, and sequences are packed without padding.

A micro-batch becomes a few rows of tokens. Each pair is one *group*: its prompt followed by its
responses (chosen, then rejected), laid out one after the other::

    row:       [ p0 p1 p2 | c0 c1 c2 c3 | r0 r1 ] [ next group ... ] [pad]
    positions:   0  1  2    3  4  5  6    3  4     0  ...

The attention mask is causal inside a group, except that a response sees the prompt and itself but not
the other response, and the positions of every response restart right after the prompt. Each response
token thus gets exactly the logits it gets in its own (prompt + response) sequence, so the summed
log-probs equal the padded path's (`irpo.training.data.sequence_logps`) up to float rounding, with the
prompt's tokens computed once instead of twice and no padding between groups. Groups are placed in rows
as wide as the longest group (first fit, longest first), so attention costs no more than one row per pair.

The first token of every response is predicted from the prompt's last position, which the responses
share; the other tokens from the position before them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from irpo.models.tokens import EncodedSequence
from irpo.training.logprobs import token_logps

PACKINGS = ("shared_prompt", "padded")


def check_packing(packing: str) -> None:
    if packing not in PACKINGS:
        raise ValueError(f"unknown trainer.packing '{packing}'; valid values: {', '.join(PACKINGS)}")


@dataclass
class Group:
    """One prompt and the responses that continue it (each one scored given the prompt alone)."""

    prompt: list[int]
    responses: list[list[int]]

    @property
    def length(self) -> int:
        return len(self.prompt) + sum(len(r) for r in self.responses)


def split(sequence: EncodedSequence) -> tuple[list[int], list[int]]:
    return sequence.input_ids[: sequence.response_start], sequence.input_ids[sequence.response_start :]


def pair_groups(chosen: list[EncodedSequence], rejected: list[EncodedSequence]) -> list[Group]:
    """One group per pair: the shared prompt, then the chosen and rejected responses."""
    groups = []
    for c, r in zip(chosen, rejected, strict=True):
        prompt, chosen_response = split(c)
        rejected_prompt, rejected_response = split(r)
        if prompt != rejected_prompt:  # both sides encode the same prompt text alike; anything else is a bug
            raise ValueError("a pair's chosen and rejected sequences encode different prompts; cannot share it")
        groups.append(Group(prompt, [chosen_response, rejected_response]))
    return groups


def single_groups(sequences: list[EncodedSequence]) -> list[Group]:
    """One group per sequence (SFT, or scoring one side alone): packed without padding, nothing shared."""
    groups = []
    for sequence in sequences:
        prompt, response = split(sequence)
        groups.append(Group(prompt, [response]))
    return groups


@dataclass
class PackedBatch:
    """Model inputs of shape (rows, width) plus where each response token's log-prob comes from.

    attention_mask: (rows, 1, width, width) additive mask (0 = may attend, dtype min = may not).
    source_row, source_col: the position whose logits predict each response token, shape (N,);
    targets: that token's id, (N,); response_index: which response (in group order) it belongs to, (N,).
    """

    input_ids: torch.Tensor
    position_ids: torch.Tensor
    attention_mask: torch.Tensor
    source_row: torch.Tensor
    source_col: torch.Tensor
    targets: torch.Tensor
    response_index: torch.Tensor
    num_responses: int


def place_in_rows(groups: list[Group]) -> list[list[int]]:
    """Group indices per row: first fit, longest first, into rows as wide as the longest group."""
    width = max(g.length for g in groups)
    rows: list[list[int]] = []
    room: list[int] = []
    for index in sorted(range(len(groups)), key=lambda i: -groups[i].length):
        row = next((r for r, free in enumerate(room) if free >= groups[index].length), None)
        if row is None:
            rows.append([])
            room.append(width)
            row = len(rows) - 1
        rows[row].append(index)
        room[row] -= groups[index].length
    return rows


def pack(groups: list[Group], pad_id: int, dtype: torch.dtype) -> PackedBatch:
    """Lays the groups out in rows with their block mask; responses are numbered group by group."""
    rows = place_in_rows(groups)
    width = max(g.length for g in groups)
    first_response = [0]
    for g in groups:
        first_response.append(first_response[-1] + len(g.responses))
    input_ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    position_ids = torch.zeros((len(rows), width), dtype=torch.long)
    allowed = torch.zeros((len(rows), width, width), dtype=torch.bool)
    source_row: list[int] = []
    source_col: list[int] = []
    targets: list[int] = []
    response_index: list[int] = []
    for r, members in enumerate(rows):
        start = 0
        for index in members:
            group = groups[index]
            p = len(group.prompt)
            input_ids[r, start : start + p] = torch.tensor(group.prompt)
            position_ids[r, start : start + p] = torch.arange(p)
            allowed[r, start : start + p, start : start + p] = True
            offset = start + p
            for k, response in enumerate(group.responses):
                n = len(response)
                span = slice(offset, offset + n)
                input_ids[r, span] = torch.tensor(response)
                position_ids[r, span] = torch.arange(p, p + n)
                allowed[r, span, start : start + p] = True  # the prompt
                allowed[r, span, span] = True  # itself (made causal below)
                source_row.extend([r] * n)
                source_col.extend([start + p - 1, *range(offset, offset + n - 1)])
                targets.extend(response)
                response_index.extend([first_response[index] + k] * n)
                offset += n
            start = offset
        # padding attends to itself only, so no softmax row is empty; its outputs are never read
        allowed[r, range(start, width), range(start, width)] = True
    allowed &= torch.ones((width, width), dtype=torch.bool).tril()
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
    return PackedBatch(
        input_ids=input_ids,
        position_ids=position_ids,
        attention_mask=mask.unsqueeze(1),
        source_row=torch.tensor(source_row),
        source_col=torch.tensor(source_col),
        targets=torch.tensor(targets),
        response_index=torch.tensor(response_index),
        num_responses=first_response[-1],
    )


def model_dtype(model) -> torch.dtype:
    return next(p.dtype for p in model.parameters() if p.is_floating_point())


def response_logps(model, groups: list[Group], pad_id: int, device, chunk_size: int = 0) -> torch.Tensor:
    """Summed log πθ(response | prompt) of every response of every group, in group order: shape (R,).

    One forward over the packed rows. The output layer and log-softmax run only at the positions that
    predict a response token: `chunk_size` of them at a time without the full logits (irpo/training/logprobs.py),
    or with chunk_size=0 all at once through transformers' boolean `logits_to_keep`.
    """
    batch = pack(groups, pad_id, model_dtype(model))
    inputs = {
        "input_ids": batch.input_ids.to(device),
        "attention_mask": batch.attention_mask.to(device),
        "position_ids": batch.position_ids.to(device),
    }
    if chunk_size:
        rows = batch.source_row * batch.input_ids.shape[1] + batch.source_col
        logps = token_logps(model, inputs, rows, batch.targets, chunk_size)
    else:
        logps = full_logits_logps(model, inputs, batch, device)
    sums = torch.zeros(batch.num_responses, dtype=torch.float32, device=device)
    return sums.index_add(0, batch.response_index.to(device), logps)


def full_logits_logps(model, inputs: dict[str, torch.Tensor], batch: PackedBatch, device) -> torch.Tensor:
    """Each response token's log-prob from the logits at the positions that predict one (boolean logits_to_keep)."""
    keep = torch.zeros(batch.input_ids.shape, dtype=torch.bool)
    keep[batch.source_row, batch.source_col] = True
    # the kept positions come back flattened in row-major order; a prompt's last one serves both responses
    kept_index = keep.flatten().cumsum(0) - 1
    source = kept_index[batch.source_row * keep.shape[1] + batch.source_col]
    logits = model(**inputs, logits_to_keep=keep.to(device)).logits
    if logits.dim() != 2:
        raise RuntimeError(
            f"{type(model).__name__} ignored a boolean logits_to_keep (returned logits of shape "
            f"{tuple(logits.shape)}); shared-prompt packing needs transformers >= 5: use trainer.packing=padded"
        )
    return torch.log_softmax(logits.float(), dim=-1)[source.to(device), batch.targets.to(device)]
