"""Text to token ids, as every part reads it: the samplers encode prompts, the trainers (prompt, response) pairs."""

from __future__ import annotations

from dataclasses import dataclass


def render_prompt(task, example, tokenizer, use_chat_template: bool) -> str:
    """The task's prompt for `example` as the model reads it: wrapped as a user turn in the tokenizer's chat
    template (ending where the assistant's answer begins) when `use_chat_template`, else as it is."""
    text = task.prompt(example)
    if not use_chat_template:
        return text
    if not getattr(tokenizer, "chat_template", None):
        raise ValueError("model.use_chat_template=true but the tokenizer has no chat template")
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
    )


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
