"""MATH (Hendrycks et al., 2021): four fixed in-context examples, \\boxed answers, equivalence by math-verify.

Data: the release files (`task.data_dir`, rows with unique_id) or the hub copy `hub_id`, one config
per subject and no unique_id. Both give the same 7500/5000 split, the same four in-context examples
(found in the hub copy by their problem's fingerprint) and the same held-out questions: the train
rows are put in fingerprint order before the seeded draw, so the order a copy stores them in is moot.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from irpo.setting import setting
from irpo.tasks.base import FINAL_ANSWER, Example, Splits, Task, extract_after_final_answer, hold_out
from irpo.tasks.data import load_hub_split, read_rows, require_fields

log = logging.getLogger(__name__)

# Appendix B.1, word for word.
INSTRUCTION = (
    "Your task is to answer the last question below. Give step by step reasoning before you answer, and "
    "when you're ready to answer, please wrap your answer in \\boxed, and conclude using the format "
    '"Final answer: ..."\n'
)
HUB_SUBJECTS = (
    "algebra",
    "counting_and_probability",
    "geometry",
    "intermediate_algebra",
    "number_theory",
    "prealgebra",
    "precalculus",
)
RELEASE_SIZES = {"train": 7500, "test": 5000, "math500_test": 500}
# Fingerprints (see `fingerprint`) of the default in-context examples' problems, to find them in a copy
# whose rows carry no unique_id (the hub's).
FEWSHOT_FINGERPRINTS = {
    "train/algebra/2781.json": "0f4d16349c0ca3da",
    "train/number_theory/436.json": "99ab4e44d93849ac",
    "train/precalculus/376.json": "6685eff732ee0928",
    "train/intermediate_algebra/764.json": "59875322d8146ec7",
}


@dataclass
class MATHTaskConfig:
    name: str = setting("math", help="The task: competition mathematics, answers checked with math-verify.")
    data_dir: str | None = setting(
        None, help="A dir holding train.jsonl, test.jsonl (and math500_test.jsonl); null uses the hub."
    )
    hub_id: str = setting(
        "EleutherAI/hendrycks_math", help="The hub dataset: one config per subject, splits train and test."
    )
    math500_hub_id: str = setting(
        "HuggingFaceH4/MATH-500", help="The hub dataset for test_set=math500 when data_dir is null."
    )
    instruction: str = setting(INSTRUCTION, help="Prepended to every prompt (the paper's).")
    test_set: str = setting("test", help="test (5000 problems) | math500 (the 500-problem subset).")
    fewshot_ids: list[str] = setting(
        factory=lambda: [
            "train/algebra/2781.json",
            "train/number_theory/436.json",
            "train/precalculus/376.json",
            "train/intermediate_algebra/764.json",
        ],
        help="Training problems shown before every question (and kept out of training).",
    )
    num_valid: int = setting(1000, help="Questions held out of train (seeded) for checkpoint selection.")
    valid_seed: int = setting(0, help="Seeds which training questions are held out.")
    max_train: int | None = setting(None, help="Train on the first n training questions; null = all.")
    verify_timeout_s: int = setting(
        5, help="Seconds per equivalence check, so a pathological expression cannot hang a run."
    )

    def __post_init__(self) -> None:
        if self.test_set not in ("test", "math500"):
            raise ValueError(f"task.test_set must be 'test' or 'math500', got '{self.test_set}'")


def all_boxed(text: str) -> list[str]:
    """Contents of every \\boxed{...} (or \\fbox{...}) in order, nested braces included; `\\boxed 5` too.
    An unbalanced one is skipped."""
    found, end = [], 0
    for match in re.finditer(r"\\(?:boxed|fbox)\s*", text):
        i = match.end()
        if match.start() < end:  # inside the previous box: \boxed{\boxed{5}} is one answer
            continue
        if i < len(text) and text[i] == "{":
            depth = 0
            for j in range(i, len(text)):
                depth += {"{": 1, "}": -1}.get(text[j], 0)
                if depth == 0:
                    content = text[i + 1 : j].strip()
                    found.append(last_boxed(content) or content)
                    end = j
                    break
            continue
        bare = re.match(r"[^\s$]+", text[i:])
        if bare:
            found.append(bare.group().strip())
    return found


def last_boxed(text: str) -> str | None:
    """Content of the last well-formed \\boxed{...} (see `all_boxed`), or None."""
    boxed = all_boxed(text)
    return boxed[-1] if boxed else None


# A remark after an answer written without a box ("5 (the count of pairs)", "5. There are ...", "5 because
# ..."): the answer is what comes before it. math-verify reads the last value of a line, so without this
# "4 (or 5)", "4. 5" and "4 because 2 + 3 = 5" would all state 5. A remark that hedges, concludes again ("x = 4,
# so y = 5") or is a second bare answer ("4. 5") leaves no answer.
_REMARK = re.compile(
    r"\s+\((?=[^()]*(?:=|(?<![\\A-Za-z])[A-Za-z]{2}))|\.\s+|,?\s+(?:because|since|as|so|therefore|thus|hence)\b"
)
_REMARK_DOUBT = re.compile(
    r"\?|≈|\\approx|\b(?:or|maybe|perhaps|probably|possibly|about|approximately|roughly|nearly|around|not|wrong|"
    r"incorrect|wait|actually|instead|rather|unsure|guess|think|if|unless|also|alternatively|otherwise|could|"
    r"might|so|therefore|thus|hence|answer|result|final|total|equals?)\b|n't\b",
    re.IGNORECASE,
)


def answer_before_remark(line: str) -> str | None:
    """An unboxed answer line without the remark after its answer (see _REMARK), or None if the remark doubts it."""
    if "?" in line:
        return None
    masked = re.sub(r"\\(?:text|mbox)\s*\{[^{}]*\}", lambda m: "_" * len(m.group()), line)  # "34\text{ sq. units}"
    remark = _REMARK.search(masked)
    if remark is None:
        return line
    if _REMARK_DOUBT.search(masked[remark.start() :]):
        return None
    if remark.group().strip() == "." and not re.match(r"[A-Za-z]", line[remark.end() :]):
        return None  # "4. 5": a second answer, not a sentence
    return line[: remark.start()]


def normalize(answer: str) -> str:
    """A string form for the fallback comparison and for majority-vote keys."""
    text = answer.strip().strip("$").strip()
    text = re.sub(r"\\text\{\s*([^}]*)\}", r"\1", text)
    text = re.sub(r"\\(?:left|right|!|,|;|:|displaystyle)", "", text)
    text = text.replace("dfrac", "frac").replace("tfrac", "frac").replace("^\\circ", "").replace("^{\\circ}", "")
    text = re.sub(r"\s+", "", text).rstrip(".")
    return text


def fingerprint(text: str) -> str:
    """A short hash of a problem's text, blind to whitespace: the same problem in any copy of MATH."""
    return hashlib.sha256(" ".join(text.split()).encode()).hexdigest()[:16]


class MATHTask(Task):
    name = "math"

    def __init__(self, cfg: MATHTaskConfig):
        super().__init__(cfg)
        self._fewshot: list[Example] | None = None  # None until the train split is read; [] is zero-shot

    def _rows(self, split: str) -> list[tuple[str, int, dict[str, Any]]]:
        if self.cfg.data_dir:
            path = Path(self.cfg.data_dir).expanduser() / f"{split}.jsonl"
            return [(str(path), n, row) for n, row in read_rows(path)]
        if split == "math500_test":
            rows = [
                (f"{self.cfg.math500_hub_id}[test]", n, row)
                for n, row in load_hub_split(self.cfg.math500_hub_id, None, "test")
            ]
        else:
            rows = []
            for subject in HUB_SUBJECTS:
                rows += [
                    (f"{self.cfg.hub_id}/{subject}[{split}]", n, {**row, "subject_dir": subject})
                    for n, row in load_hub_split(self.cfg.hub_id, subject, split)
                ]
        if len(rows) != RELEASE_SIZES[split]:
            raise ValueError(
                f"the hub copy of MATH has {len(rows)} {split} rows, the release {RELEASE_SIZES[split]}: "
                f"{self.cfg.math500_hub_id if split == 'math500_test' else self.cfg.hub_id} is not the "
                "release's split; set task.data_dir to the release files"
            )
        return rows

    def _examples(self, split: str, skipped: Counter[str]) -> list[Example]:
        examples = []
        for source, line, row in self._rows(split):
            require_fields(row, ("problem", "solution"), f"{source}:{line}")
            answer = row.get("answer") or last_boxed(row["solution"])
            answer = " ".join(answer.split()) if answer else answer  # the answer line must be one line
            if not answer:
                skipped["no_gold_answer"] += 1
                log.warning("%s:%d: solution has no \\boxed answer; row skipped", source, line)
                continue
            # The release's own ids; rows without one (the hub's) are named by subject and fingerprint (of the
            # solution too: the release has two train rows with one problem and different solutions).
            fallback = (
                f"{split}/{row['subject_dir']}/{fingerprint(row['problem'])}-{fingerprint(row['solution'])[:8]}"
                if row.get("subject_dir")
                else f"{split}-{line}"
            )
            # Appendix B.1's in-context format: "Solution: [solution] Final answer: [answer]".
            solution = f" {row['solution'].strip()}\n{FINAL_ANSWER} {answer}"
            examples.append(
                Example(
                    id=row.get("unique_id") or fallback,
                    question=row["problem"].strip(),
                    gold_answer=answer,
                    gold_solution=solution,
                    meta={"level": row.get("level"), "type": row.get("type") or row.get("subject")},
                )
            )
        return examples

    def _find_fewshot(self, train: list[Example]) -> list[Example]:
        by_id = {e.id: e for e in train}
        by_fingerprint = {fingerprint(e.question): e for e in train}
        found, missing = [], []
        for fewshot_id in self.cfg.fewshot_ids:
            example = by_id.get(fewshot_id) or by_fingerprint.get(FEWSHOT_FINGERPRINTS.get(fewshot_id, ""))
            if example is None:
                missing.append(fewshot_id)
            else:  # a hub row found by fingerprint takes the release's id
                found.append(
                    Example(fewshot_id, example.question, example.gold_answer, example.gold_solution, example.meta)
                )
        if missing:
            raise ValueError(
                f"task.fewshot_ids not found in the MATH train set: {', '.join(missing)} (a copy without "
                "unique_id, like the hub's, can only be searched for the default ids; set task.data_dir "
                "to the release files to use others)"
            )
        return found

    def load_splits(self) -> Splits:
        skipped: Counter[str] = Counter()
        train = self._examples("train", skipped)
        test = self._examples("math500_test" if self.cfg.test_set == "math500" else "test", skipped)
        self._fewshot = self._find_fewshot(train)
        shown = {fingerprint(e.question) for e in self._fewshot}
        train = [e for e in train if fingerprint(e.question) not in shown]
        # Fingerprint order, so the held-out draw is the same whatever order a copy stores its rows in.
        train.sort(key=lambda e: (fingerprint(e.question), fingerprint(e.gold_solution or "")))
        train, valid = hold_out(train, self.cfg.num_valid, self.cfg.valid_seed)
        return Splits(train=train[: self.cfg.max_train], valid=valid, test=test, skipped=dict(skipped))

    @property
    def fewshot(self) -> list[Example]:
        if self._fewshot is None:
            self.load_splits()
        assert self._fewshot is not None
        return self._fewshot

    def prompt(self, example: Example) -> str:
        shots = "".join(f"Question: {e.question}\nSolution:{e.gold_solution}\n\n" for e in self.fewshot)
        return self.instruction + shots + self.prompt_body(example)

    def extract_answer(self, example: Example, completion: str) -> str | None:
        final = extract_after_final_answer(completion)
        if final is not None and "\\boxed" not in final:
            answer = answer_before_remark(final.strip().rstrip(".").strip())
            return (answer or "").strip().strip("$").strip().rstrip(".").strip() or None
        if final is not None and len({normalize(b) for b in all_boxed(final)}) > 1:
            return None  # "\boxed{5} or \boxed{6}" names no one answer
        # A \boxed{...} may run past the answer line's end; read it from the whole completion.
        return (last_boxed(final or "") or last_boxed(completion) or "").strip() or None  # "\\boxed{}" names none

    def is_correct(self, example: Example, answer: str | None) -> bool:
        if answer is None:
            return False
        if normalize(answer) == normalize(example.gold_answer):
            return True
        return math_equal(example.gold_answer, answer, self.cfg.verify_timeout_s)

    def canonical(self, answer: str) -> str:
        return normalize(answer)

    def majority_vote(self, example: Example, completions: list[str]) -> str | None:
        """The answer of the largest group of equivalent answers ("\\frac12", "0.5" and "\\dfrac{1}{2}" are one
        group); ties go to the group seen first. Answers are first grouped by string, then the groups by
        math-verify, so each distinct string is parsed once."""
        answers = [a for a in (self.extract_answer(example, c) for c in completions) if a is not None]
        if not answers:
            return None
        keys = [normalize(a) for a in answers]
        firsts: dict[str, str] = {}
        for key, answer in zip(keys, answers, strict=True):
            firsts.setdefault(key, answer)
        group_of: dict[str, str] = {}
        leaders: list[str] = []
        for key in dict.fromkeys(keys):
            group_of[key] = next(
                (leader for leader in leaders if math_equal(firsts[leader], firsts[key], self.cfg.verify_timeout_s)),
                key,
            )
            if group_of[key] == key:
                leaders.append(key)
        counts = Counter(group_of[key] for key in keys)
        best = max(counts.values())
        return next(a for a, key in zip(answers, keys, strict=True) if counts[group_of[key]] == best)


@functools.lru_cache(maxsize=16384)
def _parsed(text: str, timeout_s: int) -> list[Any] | None:
    """math-verify's reading of one answer, kept: a majority vote and the gold answer reuse it."""
    from math_verify import parse

    try:
        parsed: list[Any] = parse(f"${text}$", parsing_timeout=timeout_s)
        return parsed
    except Exception:  # math-verify raises on timeouts and exotic LaTeX; neither reads as an answer
        return None


def math_equal(gold: str, answer: str, timeout_s: int) -> bool:
    """Symbolic equivalence by math-verify, bounded in time; any failure counts as not equal."""
    from math_verify import verify

    gold_parsed, answer_parsed = _parsed(gold, timeout_s), _parsed(answer, timeout_s)
    try:
        return bool(gold_parsed and answer_parsed and verify(gold_parsed, answer_parsed, timeout_seconds=timeout_s))
    except Exception:  # as above: a failed check is not a correct answer
        return False
