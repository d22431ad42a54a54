"""GSM8K (Cobbe et al., 2021) with the paper's zero-shot prompt (Appendix B.1) and exact numeric answer checking."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irpo.setting import setting
from irpo.tasks.base import FINAL_ANSWER, Example, Splits, Task, extract_after_final_answer, hold_out
from irpo.tasks.data import load_hub_split, read_rows, require_fields
from irpo.tasks.numbers import NumericAnswers, format_number, last_number, stated_number

log = logging.getLogger(__name__)

INSTRUCTION = (
    "Your task is to answer the question below. Give step by step reasoning before you answer, and "
    'when you\'re ready to answer, please use the format "Final answer: ..."\n'
)


@dataclass
class GSM8KTaskConfig:
    name: str = setting("gsm8k", help="The task: grade-school math word problems, answers checked as numbers.")
    data_dir: str | None = setting(
        None, help="A dir holding train.jsonl and test.jsonl; null loads `hub_id` through `datasets`."
    )
    hub_id: str = setting("openai/gsm8k", help="The hub dataset read when data_dir is null.")
    instruction: str = setting(INSTRUCTION, help="Prepended to every question (the paper's zero-shot prompt).")
    num_valid: int = setting(1000, help="Questions held out of train (seeded) for checkpoint selection.")
    valid_seed: int = setting(0, help="Seeds which training questions are held out.")
    answer_fallback_last_number: bool = setting(
        False, help='Read a sample\'s last number as its answer when it has no "Final answer:".'
    )
    max_train: int | None = setting(
        None, help="Train on the first n training questions (after the held-out split); null = all."
    )


_CALCULATOR = re.compile(r"<<[^>]*>>")


def gold_solution(answer_field: str) -> tuple[str, str]:
    """(chain of thought in the prompt's format, final answer) from a GSM8K answer field."""
    body, final = answer_field.rsplit("####", 1)
    final = final.strip()
    steps = _CALCULATOR.sub("", body).strip()
    return f" {steps}\n{FINAL_ANSWER} {final}", final


class GSM8KTask(NumericAnswers, Task):
    name = "gsm8k"

    def __init__(self, cfg: GSM8KTaskConfig):
        super().__init__(cfg)

    def _rows(self, split: str) -> list[tuple[str, int, dict[str, Any]]]:
        if self.cfg.data_dir:
            path = Path(self.cfg.data_dir).expanduser() / f"{split}.jsonl"
            return [(str(path), n, row) for n, row in read_rows(path)]
        return [(f"{self.cfg.hub_id}[{split}]", n, row) for n, row in load_hub_split(self.cfg.hub_id, "main", split)]

    def _examples(self, split: str, skipped: Counter[str]) -> list[Example]:
        examples = []
        for source, line, row in self._rows(split):
            require_fields(row, ("question", "answer"), f"{source}:{line}")
            if "####" not in row["answer"] or stated_number(row["answer"].rsplit("####", 1)[1]) is None:
                skipped["no_gold_answer"] += 1
                log.warning("%s:%d: no usable '#### N' gold answer; row skipped", source, line)
                continue
            solution, final = gold_solution(row["answer"])
            examples.append(
                Example(
                    id=f"{split}-{line}", question=row["question"].strip(), gold_answer=final, gold_solution=solution
                )
            )
        return examples

    def load_splits(self) -> Splits:
        skipped: Counter[str] = Counter()
        train = self._examples("train", skipped)
        test = self._examples("test", skipped)
        train, valid = hold_out(train, self.cfg.num_valid, self.cfg.valid_seed)
        return Splits(train=train[: self.cfg.max_train], valid=valid, test=test, skipped=dict(skipped))

    def extract_answer(self, example: Example, completion: str) -> str | None:
        answer = extract_after_final_answer(completion)
        if answer is None and self.cfg.answer_fallback_last_number:
            value = last_number(completion)
            return format_number(value) if value is not None else None
        return answer
