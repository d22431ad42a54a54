"""What a task is: examples with gold answers, a prompt, and a binary reward on the final answer."""

from __future__ import annotations

import random
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from irpo.tasks.answer_line import AnswerLine

FINAL_ANSWER = "Final answer:"
_FINAL_ANSWER_RE = re.compile(r"final answer\s*:", re.IGNORECASE)


@dataclass
class Example:
    id: str
    question: str
    gold_answer: str
    # Chain of thought in the prompt's answer format (ends with "Final answer: ..."), or None.
    gold_solution: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


@dataclass
class Splits:
    train: list[Example]
    valid: list[Example]
    test: list[Example]
    # Rows dropped while loading (no usable gold answer, ...), by reason.
    skipped: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Stages join samples, rewards and pairs to questions by id: one id for two questions would lose one.
        counts = Counter(e.id for e in self.train + self.valid + self.test)
        repeated = sorted(qid for qid, count in counts.items() if count > 1)
        if repeated:
            raise ValueError(
                f"{len(repeated)} question ids occur more than once across the splits "
                f"(e.g. {', '.join(repeated[:3])}); each question needs its own id"
            )

    def get(self, name: str) -> list[Example]:
        if name not in ("train", "valid", "test"):
            raise KeyError(f"unknown split '{name}'; valid splits: train, valid, test")
        split: list[Example] = getattr(self, name)
        return split


def hold_out(train: list[Example], size: int, seed: int) -> tuple[list[Example], list[Example]]:
    """(train without the held-out questions, the held-out questions): a seeded draw of `size`, order kept."""
    order = list(range(len(train)))
    random.Random(seed).shuffle(order)
    held = set(order[:size])
    return [e for i, e in enumerate(train) if i not in held], [e for i, e in enumerate(train) if i in held]


def _answer_line_span(text: str, marker: re.Match[str]) -> tuple[int, int]:
    """Where the answer after `marker` lies: the rest of its line, or, when that is empty, the next
    non-empty line ("Final answer:\n40")."""
    end = text.find("\n", marker.end())
    end = len(text) if end == -1 else end
    if text[marker.end() : end].strip() or end == len(text):
        return marker.end(), end
    following = re.search(r"[^\s][^\n]*", text[end:])
    if not following or following.group().lower().startswith("question:"):  # a new question is no answer
        return marker.end(), end
    return end + following.start(), end + following.end()


def extract_after_final_answer(text: str) -> str | None:
    """The answer after the last "Final answer:" (its line, or the next non-empty one), or None if absent/empty."""
    matches = list(_FINAL_ANSWER_RE.finditer(text))
    if not matches:
        return None
    start, end = _answer_line_span(text, matches[-1])
    return text[start:end].strip() or None


def cut_after_answer_line(completion: str) -> str:
    """Drop whatever a model wrote after the answer to its first "Final answer:"."""
    match = _FINAL_ANSWER_RE.search(completion)
    if not match:
        return completion
    return completion[: _answer_line_span(completion, match)[1]]


class Task:
    """A task turns examples into prompts and judges completions.

    Subclasses implement `load_splits`, `prompt_body`, `extract_answer` and `is_correct`. A task whose answers
    follow another marker sets `answer_marker` (None: samples end only at EOS, a stop string or the budget),
    or returns its own rule from `stop_rule`.
    """

    name: str = "task"
    answer_marker: str | None = FINAL_ANSWER  # a sample ends with the line that holds the answer after it

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg
        self.instruction: str = getattr(cfg, "instruction", "") or ""

    def load_splits(self) -> Splits:
        raise NotImplementedError

    def stop_rule(self) -> AnswerLine | None:
        """Where a sample ends, which every sampler asks the request for: the end of the answer line."""
        return AnswerLine(self.answer_marker) if self.answer_marker else None

    def seed_examples(self) -> list[Example]:
        """Gold solutions the embedded tiny model is SFT'd on to become M0 (by default the train split's)."""
        return [e for e in self.load_splits().train if e.gold_solution]

    def prompt_body(self, example: Example) -> str:
        return f"Question: {example.question}\nSolution:"

    def prompt(self, example: Example) -> str:
        return self.instruction + self.prompt_body(example)

    def extract_answer(self, example: Example, completion: str) -> str | None:
        raise NotImplementedError

    def is_correct(self, example: Example, answer: str | None) -> bool:
        raise NotImplementedError

    def canonical(self, answer: str) -> str:
        """A key under which equivalent answers are counted together in a majority vote."""
        return answer.strip()

    def finish(self, completion: str) -> str:
        """The part of a raw sample that counts as the response (everything up to the answer line)."""
        return cut_after_answer_line(completion)

    def reward(self, example: Example, completion: str) -> tuple[str | None, float]:
        answer = self.extract_answer(example, completion)
        return answer, float(answer is not None and self.is_correct(example, answer))

    def majority_vote(self, example: Example, completions: list[str]) -> str | None:
        """The most common extracted answer (ties go to the one seen first); None if none extracted."""
        answers = [a for a in (self.extract_answer(example, c) for c in completions) if a is not None]
        if not answers:
            return None
        counts = Counter(self.canonical(a) for a in answers)
        best = max(counts.values())
        return next(a for a in answers if counts[self.canonical(a)] == best)
