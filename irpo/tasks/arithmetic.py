"""A procedurally generated, seeded task in GSM8K's shape, small enough for a CPU.

Each problem is a short story of arithmetic steps on one quantity ("Mia has 7 apples. She buys 5
more. ..."), with a gold step-by-step solution ending "Final answer: N" as in the GSM8K task.
Difficulty knobs: the number of steps, operand sizes and which operations appear.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from irpo.tasks.base import FINAL_ANSWER, Example, Splits, Task, extract_after_final_answer
from irpo.tasks.numbers import NumericAnswers

NAMES = ["Mia", "Leo", "Ava", "Sam", "Zoe", "Max", "Ivy", "Ben", "Eli", "Amy", "Tom", "Kim"]
OBJECTS = ["apples", "books", "coins", "cards", "pens", "shells", "stamps", "marbles", "cups", "rocks"]


@dataclass
class ArithmeticTaskConfig:
    """Defaults are the embedded default's: sized so M0 solves about a fifth of the test problems
    and the whole default loop runs in minutes on 2 CPU cores (docs/results.md)."""

    name: str = "arithmetic"
    instruction: str = ""  # prepended to every prompt; empty keeps prompts short for the tiny model
    seed: int = 1234
    num_train: int = 256
    num_valid: int = 64
    num_test: int = 200
    num_seed_sft: int = 2000  # gold solutions for making the tiny seed model M0, disjoint from the splits
    min_steps: int = 2
    max_steps: int = 2
    max_start: int = 9
    max_operand: int = 9
    max_value: int = 40
    operations: list[str] = field(default_factory=lambda: ["add", "sub"])

    def __post_init__(self) -> None:
        unknown = set(self.operations) - {"add", "sub", "mul"}
        if unknown or not self.operations:
            raise ValueError(f"task.operations must be a non-empty subset of add, sub, mul; got {self.operations}")
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError(f"need 1 <= task.min_steps <= task.max_steps, got {self.min_steps}, {self.max_steps}")


def make_problem(rng: random.Random, cfg: ArithmeticTaskConfig) -> tuple[str, list[str], int]:
    """One story: (question, solution lines, answer)."""
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    other = rng.choice([n for n in NAMES if n != name])
    value = rng.randint(1, cfg.max_start)
    sentences = [f"{name} has {value} {obj}."]
    lines = []
    for _ in range(rng.randint(cfg.min_steps, cfg.max_steps)):
        ops = [op for op in cfg.operations if not (op == "sub" and value == 0)]
        ops = [op for op in ops if not (op == "mul" and value * 2 > cfg.max_value)]
        ops = [op for op in ops if not (op == "add" and value + 1 > cfg.max_value)] or ["sub"]
        op = rng.choice(ops)
        if op == "add":
            amount = rng.randint(1, min(cfg.max_operand, cfg.max_value - value))
            sentences.append(
                rng.choice(
                    [
                        f"{name} buys {amount} more.",
                        f"{name} finds {amount} more.",
                        f"{other} gives {name} {amount} more.",
                    ]
                )
            )
            lines.append(f"{value} + {amount} = {value + amount}")
            value += amount
        elif op == "sub":
            amount = rng.randint(1, min(cfg.max_operand, value))
            sentences.append(
                rng.choice([f"{name} gives {amount} to {other}.", f"{name} loses {amount}.", f"{name} sells {amount}."])
            )
            lines.append(f"{value} - {amount} = {value - amount}")
            value -= amount
        else:
            factor = 3 if value * 3 <= cfg.max_value and rng.random() < 0.5 else 2
            sentences.append(f"Then the number of {obj} {'triples' if factor == 3 else 'doubles'}.")
            lines.append(f"{value} * {factor} = {value * factor}")
            value *= factor
    sentences.append(f"How many {obj} does {name} have now?")
    return " ".join(sentences), lines, value


def format_solution(lines: list[str], answer: str) -> str:
    return " " + "\n".join([*lines, f"{FINAL_ANSWER} {answer}"])


class ArithmeticTask(NumericAnswers, Task):
    name = "arithmetic"

    def __init__(self, cfg: ArithmeticTaskConfig):
        super().__init__(cfg)
        self._splits: Splits | None = None
        self._seed_pool: list[Example] = []

    def _generate(self) -> None:
        cfg = self.cfg
        rng = random.Random(cfg.seed)
        sizes = {"test": cfg.num_test, "valid": cfg.num_valid, "train": cfg.num_train, "seed": cfg.num_seed_sft}
        seen: set[str] = set()
        made: dict[str, list[Example]] = {split: [] for split in sizes}
        # Fill splits in a fixed order, so growing the train set never changes the test set.
        for split, size in sizes.items():
            attempts = 0
            while len(made[split]) < size:
                attempts += 1
                if attempts > 50 * size + 1000:
                    raise ValueError(
                        f"task.arithmetic: cannot make {size} distinct {split} problems with these "
                        "knobs; raise max_operand/max_steps or ask for fewer problems"
                    )
                question, lines, answer = make_problem(rng, cfg)
                if question in seen:
                    continue
                seen.add(question)
                made[split].append(
                    Example(
                        id=f"{split}-{len(made[split])}",
                        question=question,
                        gold_answer=str(answer),
                        gold_solution=format_solution(lines, str(answer)),
                    )
                )
        self._splits = Splits(train=made["train"], valid=made["valid"], test=made["test"])
        self._seed_pool = made["seed"]

    def load_splits(self) -> Splits:
        if self._splits is None:
            self._generate()
        assert self._splits is not None  # _generate sets it
        return self._splits

    def seed_examples(self) -> list[Example]:
        if self._splits is None:
            self._generate()
        return self._seed_pool

    def extract_answer(self, example: Example, completion: str) -> str | None:
        return extract_after_final_answer(completion)
