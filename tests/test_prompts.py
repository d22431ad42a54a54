"""Each task's prompt is the paper's (Appendix B.1 of Pang et al., 2024) word for word.

The paper's texts below are copied as printed, placeholders included. The printed page keeps words
and punctuation but not line breaks, and LaTeX prints the apostrophe of "you're" as "’", so the
comparison is on words: whitespace runs are one space and "’" is "'". The line layout is checked apart.
"""

import json
import re

from irpo.tasks.arc import ARCTask, ARCTaskConfig
from irpo.tasks.base import Example
from irpo.tasks.gsm8k import GSM8KTask, GSM8KTaskConfig
from irpo.tasks.math import MATHTask, MATHTaskConfig

PAPER_GSM8K = (
    "Your task is to answer the question below. Give step by step reasoning before you answer, and "
    'when you’re ready to answer, please use the format "Final answer: ..." Question: [question here] '
    "Solution:"
)
PAPER_MATH = (
    "Your task is to answer the last question below. Give step by step reasoning before you answer, and "
    "when you’re ready to answer, please wrap your answer in \\boxed, and conclude using the format "
    '"Final answer: ..." '
    "Question: [question for the first example] Solution: [solution for the first example] "
    "Final answer: [answer (e.g., number, formula) here] "
    "Question: [question for the second example] Solution: [solution for the second example] "
    "Final answer: [answer here] "
    "Question: [question for the third example] Solution: [solution for the third example] "
    "Final answer: [answer here] "
    "Question: [question for the fourth example] Solution: [solution for the fourth example] "
    "Final answer: [answer here] "
    "Question: [the question to be solved] Solution:"
)
# The paper shows four options and says questions have three to five; the printed list is (A)..(D).
PAPER_ARC = (
    "Your task is to answer the question below. Give step by step reasoning before you answer, and "
    'when you’re ready to answer, conclude using the format "Final answer: (insert letter here)" '
    "Question: [question here] (A) [option A here] (B) [option B here] (C) [option C here] "
    "(D) [option D here] Solution:"
)


def words(text: str) -> str:
    return " ".join(text.replace("’", "'").split())


def fill(template: str, values: list[tuple[str, str]]) -> str:
    """The template with each placeholder, in turn, replaced at its first remaining occurrence."""
    for placeholder, value in values:
        assert placeholder in template, placeholder
        template = template.replace(placeholder, value, 1)
    assert not re.search(r"\[(question|solution|answer|option|the question)[^\]]*\]", template), template
    return template


def test_gsm8k_prompt_is_the_papers():
    example = Example(id="x", question="Mia has 3 apples and buys 4 more. How many does she have?", gold_answer="7")
    prompt = GSM8KTask(GSM8KTaskConfig()).prompt(example)
    assert words(prompt) == words(fill(PAPER_GSM8K, [("[question here]", example.question)]))
    assert prompt.split("\n") == [prompt.split("\n")[0], f"Question: {example.question}", "Solution:"]


def test_arc_prompt_is_the_papers():
    options = [("A", "a rock"), ("B", "a leaf"), ("C", "a shell"), ("D", "a coin")]
    example = Example(
        id="x", question="Which of these makes food from sunlight?", gold_answer="B", meta={"options": options}
    )
    prompt = ARCTask(ARCTaskConfig()).prompt(example)
    values = [("[question here]", example.question)] + [(f"[option {letter} here]", text) for letter, text in options]
    assert words(prompt) == words(fill(PAPER_ARC, values))
    assert prompt.split("\n")[1:] == [
        f"Question: {example.question}",
        "(A) a rock",
        "(B) a leaf",
        "(C) a shell",
        "(D) a coin",
        "Solution:",
    ]


def test_math_prompt_is_the_papers(tmp_path):
    """Four in-context examples in the format the model is asked for, then the question."""
    fewshot_ids = MATHTaskConfig().fewshot_ids
    rows = [
        {
            "unique_id": uid,
            "problem": f"Problem {n}: what is ${n} + {n}$?",
            "solution": f"We add: ${n} + {n} = \\boxed{{{2 * n}}}$.",
            "level": "Level 1",
            "type": "Algebra",
        }
        for n, uid in enumerate(fewshot_ids, start=1)
    ]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    test_row = {
        "unique_id": "test/algebra/1.json",
        "problem": "What is $\\frac{1}{2} + \\frac{1}{2}$?",
        "solution": "It is $\\boxed{1}$.",
        "level": "Level 1",
        "type": "Algebra",
    }
    (tmp_path / "test.jsonl").write_text(json.dumps(test_row) + "\n")
    task = MATHTask(MATHTaskConfig(data_dir=str(tmp_path), num_valid=0))
    example = task.load_splits().test[0]
    prompt = task.prompt(example)

    ordinals = ["first", "second", "third", "fourth"]
    values = []
    for ordinal, row, n in zip(ordinals, rows, range(1, 5), strict=True):
        values += [
            (f"[question for the {ordinal} example]", row["problem"]),
            (f"[solution for the {ordinal} example]", row["solution"]),
            ("[answer (e.g., number, formula) here]" if n == 1 else "[answer here]", str(2 * n)),
        ]
    values.append(("[the question to be solved]", example.question))
    assert words(prompt) == words(fill(PAPER_MATH, values))
    # Each in-context example ends with its own "Final answer:" line, and the question comes last.
    assert [line for line in prompt.split("\n") if line.startswith("Final answer:")] == [
        "Final answer: 2",
        "Final answer: 4",
        "Final answer: 6",
        "Final answer: 8",
    ]
    assert prompt.endswith(f"\nQuestion: {example.question}\nSolution:")
