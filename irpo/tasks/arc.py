"""ARC-Challenge (Clark et al., 2018): multiple choice, options as letters, no gold chain of thought.

As in the paper, training uses the ARC-Easy and ARC-Challenge train sets together, checkpoint
selection the Challenge dev set, and testing the Challenge test set (1172 questions).
"""

from __future__ import annotations

import logging
import re
import string
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irpo.setting import setting
from irpo.tasks.base import Example, Splits, Task, extract_after_final_answer
from irpo.tasks.data import load_hub_split, read_rows, require_fields

log = logging.getLogger(__name__)

# Appendix B.1, word for word.
INSTRUCTION = (
    "Your task is to answer the question below. Give step by step reasoning before you answer, and "
    'when you\'re ready to answer, conclude using the format "Final answer: (insert letter here)"\n'
)
LETTERS = string.ascii_uppercase


@dataclass
class ARCTaskConfig:
    name: str = setting("arc_challenge", help="The task: ARC-Challenge multiple-choice science questions.")
    data_dir: str | None = setting(
        None, help="A dir holding ARC-Challenge/ and ARC-Easy/ with *-{Train,Dev,Test}.jsonl; null uses the hub."
    )
    hub_id: str = setting("allenai/ai2_arc", help="The hub dataset read when data_dir is null.")
    instruction: str = setting(INSTRUCTION, help="Prepended to every question (the paper's).")
    train_on_easy: bool = setting(True, help="Train on ARC-Easy's training questions too (the paper does).")
    max_train: int | None = setting(None, help="Train on the first n training questions; null = all.")


def letter_key(choices: list[dict[str, Any]], answer_key: str) -> str | None:
    """The letter under which the answer is shown: answer keys ("C" or "3") map through the choice labels."""
    labels = [str(c["label"]).strip() for c in choices]
    key = str(answer_key).strip()
    return LETTERS[labels.index(key)] if key in labels else None


# How models write one option letter: "(B)", "B", "b)", "[B]", "B." or "B: text", after an optional
# "the answer is" / "option", or a first-person choice ("I choose", "I'll go with", "my answer is"; not
# "I think", which doubts); markdown and \boxed{} are taken off first.
_LEAD_IN = re.compile(
    r"^(?:(?:i\s*(?:['’]ll|will|would|['’]d|am going to)?\s*(?:choose|pick|select|go\s+with|opt\s+for)|"
    r"my\s+(?:final\s+)?(?:answer|choice|pick)\s+is)\s*[:\-]?\s*(?:the\s+)?(?:answer|option|choice|letter)?\s*|"
    r"(?:the\s+)?(?:correct\s+|final\s+|best\s+|right\s+)?(?:answer|option|choice|letter)(?:\s+is)?\s*[:\-]?\s*)",
    re.IGNORECASE,
)
_WRAPPED_LETTER = re.compile(r"^[(\[{]\s*([A-Za-z])\s*[)\]}]")
# A bare letter must end the answer or be followed by ")", ".", ":", "," or a dash: "A plant" is the
# article, not option A.
_BARE_LETTER = re.compile(r"^([A-Za-z])(?=\s*$|[).:,;]|\s+[-–—(])")
_OTHER_WRAPPED = re.compile(r"[(\[{]\s*([A-Za-z])\s*[)\]}]")
# A capital letter standing alone and not starting a phrase ("B" in "A or B.", not "A" in "A plant").
_OTHER_BARE = re.compile(r"(?<![\w'])([A-Z])(?![\w'])(?!\s+[a-z])")


# A letter taken back or doubted right after it: "(A) is wrong", "(A)?", "(A) (I am not sure)", "A - no wait".
# Only the first clause after the letter counts, so an explanation ("(B) because it is not ...") stays.
_FIRST_CLAUSE = re.compile(r"\bbecause\b|\bsince\b|\bas\b|[.;:!]\s")
_DOUBT = re.compile(
    r"\?|\b(?:wrong|incorrect|not|no|false|maybe|perhaps|possibly|probably|unsure|guess|unlikely|"
    r"or|wait|if|unless)\b|n't\b",
    re.IGNORECASE,
)
# After that first clause, an explanation may name other options only to rule them out ("(B) because (A) and
# (C) are not processes", "(B). Options A, C and D are wrong"): each one named is negated before the next
# (or in a list, "A, C and D are wrong", or right after a negation, "neither (A) nor (C)"), and nothing is
# endorsed or offered ("(C) is also right", "or (C)", "but (C)"; "not correct" rules out, "not wrong" endorses).
_RULES_OUT = re.compile(
    r"\b(?:not|no|never|neither|nor|none|wrong|incorrect|false|cannot|unrelated|irrelevant|eliminat\w*|"
    r"exclud\w*|rules? out|ruled out)\b|n't\b",
    re.IGNORECASE,
)
_LIST_JOINER = re.compile(r"[\s,()\[\]{}]*(?:(?:and|nor|&)[\s,()\[\]{}]*)?", re.IGNORECASE)  # "A, C and D"
_RULED_OUT_NEXT = re.compile(r"\b(?:not|nor|neither|never|except)\s*[(\[{]?\s*$", re.IGNORECASE)  # "nor (C)"
_NEGATED_ENDORSEMENT = re.compile(
    r"(?:\bnot|n't|\bnever)\s+(?:(?:the|a|an)\s+)?(?:correct|right|true|best|valid|possible|likely)\b"
    r"(?:\s+(?:answer|option|choice))?|(?:\bnot|n't)\s+(?:the\s+)?answer\b",
    re.IGNORECASE,
)
_ENDORSES = re.compile(
    r"\?|\b(?:correct|right|true|answer|best|valid|possible|plausible|likely|works?|fits?|also|too|either|or|"
    r"could|might|may|maybe|perhaps|possibly|probably|instead|actually|rather|wait|alternatively|otherwise|"
    r"but|however|though|although|choose|pick|select|if|unless)\b|(?:\bnot|n't)\s+(?:in\w+|wrong|false)\b",
    re.IGNORECASE,
)


def _plain(text: str) -> str:
    text = re.sub(r"\*\*|__|[*`$]", "", text)
    for _ in range(2):
        text = re.sub(r"\\(?:boxed|text|textbf|mathrm|mathbf)\s*\{([^{}]*)\}", r"\1", text)
    return text.strip()


def _words(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text.lower()).split())


def read_letter(answer: str, options: list[tuple[str, str]]) -> str | None:
    """The one option letter an answer names (upper case), or None when it names none or several.

    Several: another option letter in letter form after the first ("A or B", "(A), (C)"), unless an
    explanation after it names the others only to rule them out ("(A) because (B) and (C) are not plants"),
    or a first letter followed by another option's text ("(B) photosynthesis" where (C) is photosynthesis).
    """
    text = _LEAD_IN.sub("", _plain(answer), count=1)
    match = _WRAPPED_LETTER.match(text) or _BARE_LETTER.match(text)
    if not match:
        return None
    letter, tail = match.group(1).upper(), text[match.end() :]
    stated, texts = _words(tail), dict(options)
    if stated and stated == _words(texts.get(letter, "")):  # "(C) A and B": the option's own text
        return letter
    first_clause, *explanation = _FIRST_CLAUSE.split(tail, maxsplit=1)
    if _DOUBT.search(first_clause):
        return None
    if _other_letters(first_clause, texts, letter):
        return None
    if explanation and not _rules_out_others(explanation[0], texts, letter):
        return None
    if stated and any(stated == _words(option) for label, option in options if label != letter):
        return None
    return letter


def _other_letters(text: str, options: dict[str, str], letter: str) -> list[re.Match[str]]:
    """Where text names an option letter other than `letter` in letter form ("(C)" or "C"), in order."""
    named = {m.start(1): m for m in [*_OTHER_WRAPPED.finditer(text), *_OTHER_BARE.finditer(text)]}
    return [m for _, m in sorted(named.items()) if m.group(1).upper() in set(options) - {letter}]


def _rules_out_others(explanation: str, options: dict[str, str], letter: str) -> bool:
    """Whether an explanation names other options, if at all, only to rule them out (see _RULES_OUT)."""
    if not _other_letters(explanation, options, letter):
        return True
    if _ENDORSES.search(_NEGATED_ENDORSEMENT.sub(" ", explanation)):
        return False
    for sentence in re.split(r"[.;:!](?:\s+|$)", explanation):
        named = _other_letters(sentence, options, letter)
        for i, this in enumerate(named):
            following = named[i + 1] if i + 1 < len(named) else None
            after = sentence[this.end(1) : following.start(1) if following else len(sentence)]
            listed = following is not None and _LIST_JOINER.fullmatch(after)
            if not (listed or _RULES_OUT.search(after) or _RULED_OUT_NEXT.search(sentence[: this.start(1)])):
                return False
    return True


class ARCTask(Task):
    name = "arc_challenge"

    def __init__(self, cfg: ARCTaskConfig):
        super().__init__(cfg)

    def _rows(self, subset: str, split: str) -> list[tuple[str, int, dict[str, Any]]]:
        if self.cfg.data_dir:
            path = Path(self.cfg.data_dir).expanduser() / subset / f"{subset}-{split}.jsonl"
            return [(str(path), n, row) for n, row in read_rows(path)]
        hub_split = {"Train": "train", "Dev": "validation", "Test": "test"}[split]
        rows = load_hub_split(self.cfg.hub_id, subset, hub_split)
        # The hub stores choices as {"text": [...], "label": [...]}; the release files as a list of dicts.
        for _, row in rows:
            if isinstance(row.get("choices"), dict):
                row["question"] = {
                    "stem": row["question"],
                    "choices": [
                        {"text": t, "label": lab}
                        for t, lab in zip(row["choices"]["text"], row["choices"]["label"], strict=True)
                    ],
                }
                row["answerKey"] = row.get("answerKey")
        return [(f"{self.cfg.hub_id}/{subset}[{hub_split}]", n, row) for n, row in rows]

    def _examples(self, subset: str, split: str, skipped: Counter[str]) -> list[Example]:
        examples = []
        for source, line, row in self._rows(subset, split):
            require_fields(row, ("question", "answerKey"), f"{source}:{line}")
            question = row["question"]
            if not isinstance(question, dict) or not question.get("choices") or not question.get("stem"):
                raise ValueError(f"{source}:{line}: question must have a stem and choices")
            choices = question["choices"]
            gold = letter_key(choices, row["answerKey"])
            if gold is None:
                skipped["answer_key_not_a_choice"] += 1
                log.warning(
                    "%s:%d: answer key %r is not among the choice labels; row skipped", source, line, row["answerKey"]
                )
                continue
            options = [(LETTERS[i], str(c["text"]).strip()) for i, c in enumerate(choices)]
            examples.append(
                Example(
                    id=str(row.get("id") or f"{subset}-{split}-{line}"),
                    question=question["stem"],
                    gold_answer=gold,
                    gold_solution=None,
                    meta={"options": options},
                )
            )
        return examples

    def load_splits(self) -> Splits:
        skipped: Counter[str] = Counter()
        train = self._examples("ARC-Challenge", "Train", skipped)
        if self.cfg.train_on_easy:
            train += self._examples("ARC-Easy", "Train", skipped)
        return Splits(
            train=train[: self.cfg.max_train],
            valid=self._examples("ARC-Challenge", "Dev", skipped),
            test=self._examples("ARC-Challenge", "Test", skipped),
            skipped=dict(skipped),
        )

    def prompt_body(self, example: Example) -> str:
        options = "\n".join(f"({letter}) {text}" for letter, text in example.meta["options"])
        return f"Question: {example.question}\n{options}\nSolution:"

    def extract_answer(self, example: Example, completion: str) -> str | None:
        final = extract_after_final_answer(completion)
        return read_letter(final, example.meta["options"]) if final is not None else None

    def is_correct(self, example: Example, answer: str | None) -> bool:
        labels = {letter for letter, _ in example.meta["options"]}
        return answer is not None and answer in labels and answer == example.gold_answer
