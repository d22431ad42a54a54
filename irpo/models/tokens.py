"""Text to token ids, as every part reads it: the samplers encode prompts, the trainers (prompt, response) pairs."""

from __future__ import annotations

from dataclasses import dataclass


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
