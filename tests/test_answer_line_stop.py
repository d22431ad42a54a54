"""The hf sampler's stopping rule: a sequence is done at the end of the line holding "Final answer:"."""

from __future__ import annotations

import torch

from irpo.models.tiny import build_char_tokenizer
from irpo.sampling.hf import AnswerLineDone
from irpo.tasks.answer_line import AnswerLine


def done_after_each_token(texts: list[str], window: int = 48) -> list[list[bool]]:
    """Feeds the texts one character-token at a time, as generate does; returns done flags per step."""
    tokenizer = build_char_tokenizer()
    prompt = tokenizer("Question: ?\n", add_special_tokens=False)["input_ids"]
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    length = max(map(len, rows))
    rows = [r + [tokenizer.pad_token_id] * (length - len(r)) for r in rows]
    criterion = AnswerLineDone(tokenizer, len(prompt), AnswerLine("Final answer:"), window=window)
    flags = []
    for step in range(1, length + 1):
        ids = torch.tensor([prompt + r[:step] for r in rows])
        flags.append(criterion(ids, None).tolist())
    return [list(column) for column in zip(*flags, strict=True)]


def first_done(flags: list[bool]) -> int | None:
    return next((i for i, f in enumerate(flags) if f), None)


def test_stops_at_the_newline_after_the_answer_even_past_the_decode_window():
    short = "2 + 3 = 5\nFinal answer: 5\nmore text"
    long_answer = "Final answer: " + "1" * 100 + "\nmore"  # the marker leaves the 48-token window
    no_marker = "a\nb\nc\nd\n" * 10
    marker_no_newline = "x = 4. Final answer: 4"
    answer_on_next_line = "x = 4.\nFinal answer:\n\n 4\nmore"  # the answer may follow on the next line
    flags = done_after_each_token([short, long_answer, no_marker, marker_no_newline, answer_on_next_line])
    assert first_done(flags[0]) == short.index("\nmore")
    assert first_done(flags[1]) == long_answer.index("\nmore")
    assert first_done(flags[2]) is None
    assert first_done(flags[3]) is None
    assert first_done(flags[4]) == answer_on_next_line.index("\nmore")


def test_same_decisions_as_decoding_the_whole_completion():
    texts = [
        "Step 1\nFinal answer: 12\n",
        "Final  answer: 3\n",
        "final ANSWER: 7\nx",
        "Final answer:\n",
        "Final answer:\n" + "\n" * 60 + "12\n",
    ]
    windowed = done_after_each_token(texts, window=48)
    whole = done_after_each_token(texts, window=10_000)
    assert windowed == whole
