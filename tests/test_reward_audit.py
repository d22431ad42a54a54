"""The reward against hand labels of a real model's answers (issue 23's audit; tests/fixtures/reward_audit/README.md).

Each row is one answer of SmolLM2-135M-Instruct (zero-shot, after a seed SFT, after one or after three iterations),
read by a person and labelled: `label` (its committed final answer equals the gold answer), `form` (requested: on
the "Final answer:" line; other: committed some other way; none: no answer committed) and a `note`. The current
checkers re-score every row: no wrong answer may be rewarded, and no right answer given on the answer line may go
unrewarded except those listed below with the reason. Answers in another form stay unrewarded on purpose (the
instruction names the format and the reward teaches it; `task.answer_fallback_last_number` is the opt-in leniency).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig
from irpo.tasks.base import Example, Task
from irpo.tasks.gsm8k import GSM8KTask, GSM8KTaskConfig

FIXTURES = Path(__file__).parent / "fixtures" / "reward_audit"
FORMS = {"requested", "other", "none"}

# Right answers on the answer line that the checker leaves unrewarded on purpose: "<file>:<id>" -> why.
DELIBERATELY_STRICT: dict[str, str] = {}


def labelled_rows() -> list[dict]:
    """Every labelled answer, each with its `key`: "<file>:<id>"."""
    return [
        {**json.loads(line), "key": f"{path.stem}:{json.loads(line)['id']}"}
        for path in sorted(FIXTURES.glob("*.jsonl"))
        for line in path.read_text().splitlines()
    ]


ROWS = labelled_rows()
TASKS: dict[str, Task] = {"gsm8k": GSM8KTask(GSM8KTaskConfig()), "arithmetic": ArithmeticTask(ArithmeticTaskConfig())}


def checker_reward(row: dict) -> bool:
    example = Example(row["id"], row["question"], row["gold_answer"], meta=row.get("meta") or {})
    return TASKS[row["task"]].reward(example, row["completion"])[1] == 1.0


def mistakes(rewarded: Callable[[dict], bool]) -> tuple[list[str], list[str]]:
    """(false positives, false negatives among requested-form answers not listed as deliberate) of a reward."""
    false_positives, false_negatives = [], []
    for row in ROWS:
        if rewarded(row) and not row["label"]:
            false_positives.append(row["key"])
        elif (
            row["label"] and row["form"] == "requested" and row["key"] not in DELIBERATELY_STRICT and not rewarded(row)
        ):
            false_negatives.append(row["key"])
    return false_positives, false_negatives


def test_the_fixture_is_every_audited_answer_labelled():
    assert len(ROWS) >= 300 and {row["task"] for row in ROWS} == set(TASKS)
    assert all(isinstance(row["label"], bool) and row["form"] in FORMS for row in ROWS)
    assert len({row["key"] for row in ROWS}) == len(ROWS)


def test_no_wrong_answer_is_rewarded():
    false_positives, _ = mistakes(checker_reward)
    assert not false_positives


def test_every_right_answer_on_the_answer_line_is_rewarded():
    _, false_negatives = mistakes(checker_reward)
    assert not false_negatives
    by_key = {row["key"]: row for row in ROWS}
    for key in DELIBERATELY_STRICT:  # the list stays true: each is a right, unrewarded, requested-form answer
        row = by_key[key]
        assert row["label"] and row["form"] == "requested" and not checker_reward(row), key


def test_answers_in_another_form_stay_unrewarded_by_default():
    format_misses = [row for row in ROWS if row["form"] == "other" and row["label"]]
    assert format_misses and not any(checker_reward(row) for row in format_misses)


@pytest.mark.parametrize("always", [True, False], ids=["rewards-everything", "rewards-nothing"])
def test_the_audit_catches_a_checker_that_rewards_everything_or_nothing(always):
    false_positives, false_negatives = mistakes(lambda row: always)
    assert false_positives if always else false_negatives
