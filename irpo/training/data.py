"""Turning (prompt, response) text into token ids with a response mask, and batches of them."""

from __future__ import annotations

from dataclasses import dataclass

import torch


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    # A chat-template prompt already starts with BOS; adding another would shift every position.
    add_special = not (tokenizer.bos_token and prompt.startswith(tokenizer.bos_token))
    return tokenizer(prompt, add_special_tokens=add_special)["input_ids"]


@dataclass
class EncodedSequence:
    input_ids: list[int]
    response_start: int  # index of the first response token

    @property
    def response_length(self) -> int:
        return len(self.input_ids) - self.response_start


def encode(tokenizer, prompt: str, response: str) -> EncodedSequence:
    """prompt tokens + response tokens + EOS; the response (with its EOS) is what gets scored."""
    prompt_ids = encode_prompt(tokenizer, prompt)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return EncodedSequence(prompt_ids + response_ids, len(prompt_ids))


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


def sequence_logps(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Sum of log πθ(y_i | x, y_<i) over response tokens, shape (B,). Prompt and padding are masked."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    targets = batch["input_ids"][:, 1:]
    token_logps = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    return (token_logps * batch["response_mask"][:, 1:]).sum(-1)
