"""A procedurally generated, seeded task in GSM8K's shape, small enough for a CPU.

Each problem is a short story of arithmetic steps on one quantity ("Mia has 7 apples. She buys 5
more. ..."), with a gold step-by-step solution ending "Final answer: N" as in the GSM8K task.
Difficulty knobs: the number of steps, operand sizes and which operations appear.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from irpo.setting import check_renamed, renamed, setting
from irpo.tasks.base import FINAL_ANSWER, Example, Splits, Task, extract_after_final_answer
from irpo.tasks.numbers import NumericAnswers

NAMES = ["Mia", "Leo", "Ava", "Sam", "Zoe", "Max", "Ivy", "Ben", "Eli", "Amy", "Tom", "Kim"]
OBJECTS = ["apples", "books", "coins", "cards", "pens", "shells", "stamps", "marbles", "cups", "rocks"]


@dataclass
class ArithmeticTaskConfig:
    """Defaults are the embedded default's: sized so M0 solves about a fifth of the test problems
    and the whole default loop runs in minutes on 2 CPU cores (docs/results.md)."""

    name: str = setting("arithmetic", help="The task: seeded word problems in GSM8K's answer format, made here.")
    instruction: str = setting("", help="Prepended to every prompt; empty keeps prompts short for the tiny model.")
    seed: int = setting(1234, help="Seeds the problems: the same seed makes the same splits.")
    num_train: int = setting(256, help="Training questions.")
    num_valid: int = setting(64, help="Held-out questions (checkpoint selection).")
    num_test: int = setting(200, help="Test questions.")
    num_seed_sft: int = setting(
        2000, help="Gold solutions for making the tiny seed model M0, disjoint from the splits."
    )
    min_reasoning_steps: int = setting(2, help="Fewest arithmetic steps in a problem's story.")
    max_reasoning_steps: int = setting(
        2, help="Most arithmetic steps in a problem's story (not trainer.max_steps, the optimizer's steps)."
    )
    max_start: int = setting(9, help="Largest starting quantity.")
    max_operand: int = setting(9, help="Largest number added or taken away in a step.")
    max_value: int = setting(40, help="No intermediate quantity exceeds this.")
    operations: list[str] = setting(factory=lambda: ["add", "sub"], help="The steps used: a subset of add, sub, mul.")
    min_steps: int | None = renamed("min_reasoning_steps")
    max_steps: int | None = renamed("max_reasoning_steps")

    def __post_init__(self) -> None:
        check_renamed(self, "task.")
        unknown = set(self.operations) - {"add", "sub", "mul"}
        if unknown or not self.operations:
            raise ValueError(f"task.operations must be a non-empty subset of add, sub, mul; got {self.operations}")
        if not 1 <= self.min_reasoning_steps <= self.max_reasoning_steps:
            raise ValueError(
                "need 1 <= task.min_reasoning_steps <= task.max_reasoning_steps, got "
                f"{self.min_reasoning_steps}, {self.max_reasoning_steps}"
            )


def make_problem(rng: random.Random, cfg: ArithmeticTaskConfig) -> tuple[str, list[str], int]:
    """One story: (question, solution lines, answer)."""
    name, obj = rng.choice(NAMES), rng.choice(OBJECTS)
    other = rng.choice([n for n in NAMES if n != name])
    value = rng.randint(1, cfg.max_start)
    sentences = [f"{name} has {value} {obj}."]
    lines = []
    for _ in range(rng.randint(cfg.min_reasoning_steps, cfg.max_reasoning_steps)):
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
                        "knobs; raise max_operand/max_reasoning_steps or ask for fewer problems"
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
