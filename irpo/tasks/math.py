"""MATH (Hendrycks et al., 2021): four fixed in-context examples, \\boxed answers, equivalence by math-verify."""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from irpo.tasks.base import FINAL_ANSWER, Example, Splits, Task, extract_after_final_answer, hold_out
from irpo.tasks.data import load_hub_split, read_rows, require_fields

log = logging.getLogger(__name__)

INSTRUCTION = ("Your task is to answer the question below. Give step by step reasoning before you answer, and "
               "when you're ready to answer, please wrap your answer in \\boxed, and conclude your response with "
               "\"Final answer: \\boxed{...}\"\n")


@dataclass
class MATHTaskConfig:
    name: str = "math"
    data_dir: Optional[str] = None  # holds train.jsonl, test.jsonl (and math500_test.jsonl); null uses the hub
    hub_id: str = "EleutherAI/hendrycks_math"
    instruction: str = INSTRUCTION
    test_set: str = "test"  # test (5000) | math500
    # Four training problems shown before every question (and kept out of training).
    fewshot_ids: list[str] = field(default_factory=lambda: [
        "train/algebra/2781.json", "train/number_theory/436.json", "train/precalculus/376.json",
        "train/intermediate_algebra/764.json"])
    num_valid: int = 1000
    valid_seed: int = 0
    max_train: Optional[int] = None
    verify_timeout_s: int = 5  # per equivalence check, so a pathological expression cannot hang a run

    def __post_init__(self):
        if self.test_set not in ("test", "math500"):
            raise ValueError(f"task.test_set must be 'test' or 'math500', got '{self.test_set}'")


def last_boxed(text: str) -> Optional[str]:
    """Content of the last \\boxed{...} (or \\fbox{...}), nested braces included; `\\boxed 5` too."""
    starts = [m for m in re.finditer(r"\\(?:boxed|fbox)\s*", text)]
    for match in reversed(starts):
        i = match.end()
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    return text[i + 1:j].strip()
            continue  # unbalanced: try an earlier one
        bare = re.match(r"[^\s$]+", text[i:])
        if bare:
            return bare.group().strip()
    return None


def normalize(answer: str) -> str:
    """A string form for the fallback comparison and for majority-vote keys."""
    text = answer.strip().strip("$").strip()
    text = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", text)
    text = re.sub(r"\\(?:left|right|!|,|;|:|displaystyle)", "", text)
    text = text.replace("dfrac", "frac").replace("tfrac", "frac").replace("^\\circ", "").replace("^{\\circ}", "")
    text = re.sub(r"\s+", "", text).rstrip(".")
    return text


class MATHTask(Task):
    name = "math"

    def __init__(self, cfg: MATHTaskConfig):
        super().__init__(cfg)
        self._fewshot: list[Example] = []

    def _rows(self, split: str) -> list[tuple[str, int, dict]]:
        if self.cfg.data_dir:
            path = Path(self.cfg.data_dir).expanduser() / f"{split}.jsonl"
            return [(str(path), n, row) for n, row in read_rows(path)]
        return [(f"{self.cfg.hub_id}[{split}]", n, row) for n, row in load_hub_split(self.cfg.hub_id, None, split)]

    def _examples(self, split: str, skipped: Counter) -> list[Example]:
        examples = []
        for source, line, row in self._rows(split):
            require_fields(row, ("problem", "solution"), f"{source}:{line}")
            answer = row.get("answer") or last_boxed(row["solution"])
            answer = " ".join(answer.split()) if answer else answer  # the answer line must be one line
            if not answer:
                skipped["no_gold_answer"] += 1
                log.warning("%s:%d: solution has no \\boxed answer; row skipped", source, line)
                continue
            solution = f" {row['solution'].strip()}\n{FINAL_ANSWER} \\boxed{{{answer}}}"
            examples.append(Example(id=row.get("unique_id") or f"{split}-{line}", question=row["problem"].strip(),
                                    gold_answer=answer, gold_solution=solution,
                                    meta={"level": row.get("level"), "type": row.get("type") or row.get("subject")}))
        return examples

    def load_splits(self) -> Splits:
        skipped: Counter = Counter()
        train = self._examples("train", skipped)
        test = self._examples("math500_test" if self.cfg.test_set == "math500" else "test", skipped)
        by_id = {e.id: e for e in train}
        missing = [i for i in self.cfg.fewshot_ids if i not in by_id]
        if missing:
            raise ValueError(f"task.fewshot_ids not found in the MATH train set: {', '.join(missing)}")
        self._fewshot = [by_id[i] for i in self.cfg.fewshot_ids]
        train = [e for e in train if e.id not in set(self.cfg.fewshot_ids)]
        train, valid = hold_out(train, self.cfg.num_valid, self.cfg.valid_seed)
        return Splits(train=train[: self.cfg.max_train], valid=valid, test=test, skipped=dict(skipped))

    @property
    def fewshot(self) -> list[Example]:
        if not self._fewshot:
            self.load_splits()
        return self._fewshot

    def prompt(self, example: Example) -> str:
        shots = "".join(f"Question: {e.question}\nSolution:{e.gold_solution}\n\n" for e in self.fewshot)
        return self.instruction + shots + self.prompt_body(example)

    def extract_answer(self, example: Example, completion: str) -> Optional[str]:
        final = extract_after_final_answer(completion)
        if final is not None and "\\boxed" not in final:
            return final.strip().strip("$").strip() or None
        # A \boxed{...} may run past the answer line's end; read it from the whole completion.
        return last_boxed(final or "") or last_boxed(completion)

    def is_correct(self, example: Example, answer: Optional[str]) -> bool:
        if answer is None:
            return False
        if normalize(answer) == normalize(example.gold_answer):
            return True
        return math_equal(example.gold_answer, answer, self.cfg.verify_timeout_s)

    def canonical(self, answer: str) -> str:
        return normalize(answer)


def math_equal(gold: str, answer: str, timeout_s: int) -> bool:
    """Symbolic equivalence by math-verify, bounded in time; any failure counts as not equal."""
    from math_verify import parse, verify

    try:
        gold_parsed = parse(f"${gold}$", parsing_timeout=timeout_s)
        answer_parsed = parse(f"${answer}$", parsing_timeout=timeout_s)
        return bool(gold_parsed and answer_parsed and verify(gold_parsed, answer_parsed, timeout_seconds=timeout_s))
    except Exception:  # math-verify raises on timeouts and exotic LaTeX; neither is a correct answer
        return False
