"""How sure a table is: the standard error of an accuracy, and an exact paired test of two models on the same questions.

Two models scored on the same test questions differ only on the questions one gets right and the other
wrong (the discordant pairs: b where the first is right, c where the second is). Under "no difference"
each discordant question is a fair coin, so the exact McNemar test is a two-sided binomial test of b
successes in b + c tosses. `python -m irpo.stats <iter_t dir> <iter_t dir>` runs it on two evaluations, to
check a claim like "A beats B" before a README makes it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from irpo.files import read_json, read_jsonl
from irpo.rundir import IterationDir


def standard_error(p: float, n: int) -> float | None:
    """sqrt(p (1 - p) / n), the standard error of an accuracy p measured on n questions; None for n = 0."""
    if n < 0 or not 0.0 <= p <= 1.0:
        raise ValueError(f"an accuracy needs 0 <= p <= 1 and n >= 0 questions, got p={p}, n={n}")
    return math.sqrt(p * (1.0 - p) / n) if n else None


def mean_and_se(values: list[float]) -> tuple[float, float | None]:
    """The mean of repeated measurements (runs over seeds) and its standard error, sample stdev / sqrt(n);
    None for one measurement."""
    if not values:
        raise ValueError("a mean needs at least one value")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, None
    variance = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return mean, math.sqrt(variance / len(values))


def mcnemar_exact(b: int, c: int) -> float:
    """Two-sided exact McNemar p-value: P(a Binomial(b + c, 1/2) count is as far from (b + c)/2 as b is).

    Doubles the smaller tail (capped at 1); b = c = 0 (no discordant questions) gives 1.
    """
    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be >= 0, got b={b}, c={c}")
    n = b + c
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / float(2**n)
    return min(1.0, 2.0 * tail)


@dataclass(frozen=True)
class PairedTest:
    """Model A against model B on the questions both answered (their ids intersected)."""

    n: int  # questions compared
    accuracy_a: float | None
    accuracy_b: float | None
    b: int  # A right, B wrong
    c: int  # A wrong, B right
    p_value: float
    only_a: int = 0  # questions only A's evaluation has (not compared)
    only_b: int = 0

    @property
    def points(self) -> float | None:
        """A's accuracy minus B's, in percentage points, on the compared questions: 100 (b - c) / n."""
        return 100.0 * (self.b - self.c) / self.n if self.n else None

    def as_columns(self, prefix: str) -> dict[str, float | int | None]:
        """Flat `<prefix>_points`, `_b`, `_c`, `_p`, `_n` fields, for a CSV row."""
        return {
            f"{prefix}_points": None if self.points is None else round(self.points, 2),
            f"{prefix}_b": self.b,
            f"{prefix}_c": self.c,
            f"{prefix}_p": round(self.p_value, 4),
            f"{prefix}_n": self.n,
        }

    def describe(self) -> str:
        """'+2.5 pts, p=0.31 (b=7, c=2)', saying how many questions were left out when the two sets differ."""
        if not self.n:
            return f"no common questions ({self.only_a} only in this row, {self.only_b} only in the reference)"
        text = f"{self.points:+.1f} pts, p={format_p(self.p_value)} (b={self.b}, c={self.c})"
        if self.only_a or self.only_b:
            text += (
                f" on the {self.n} common questions ({self.only_a} only in this row, {self.only_b} only in the "
                "reference)"
            )
        return text


def paired_test(correct_a: dict[str, bool], correct_b: dict[str, bool]) -> PairedTest:
    """Exact McNemar test of A against B on the question ids both have (id -> right or wrong)."""
    common = correct_a.keys() & correct_b.keys()
    b = sum(1 for q in common if correct_a[q] and not correct_b[q])
    c = sum(1 for q in common if correct_b[q] and not correct_a[q])
    n = len(common)
    return PairedTest(
        n=n,
        accuracy_a=sum(bool(correct_a[q]) for q in common) / n if n else None,
        accuracy_b=sum(bool(correct_b[q]) for q in common) / n if n else None,
        b=b,
        c=c,
        p_value=mcnemar_exact(b, c),
        only_a=len(correct_a.keys() - common),
        only_b=len(correct_b.keys() - common),
    )


def format_p(p: float) -> str:
    """Two decimals, three under 0.1 (where 0.04 and 0.05 read differently), scientific under 0.001."""
    return f"{p:.2f}" if p >= 0.1 else f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"


def format_accuracy(p: float | None, se: float | None) -> str:
    """'25.5 ± 3.1%'; '-' when there is no accuracy, no '±' when there is no standard error."""
    if p is None:
        return "-"
    return f"{100 * p:.1f}%" if se is None else f"{100 * p:.1f} ± {100 * se:.1f}%"


# Accuracy columns and the per-question field of eval.jsonl that each is the mean of.
MEASURES = {"greedy": "greedy_correct", "majority": "majority_correct"}


def correctness(eval_predictions: Path, key: str) -> dict[str, bool]:
    """question id -> right or wrong, from an eval.jsonl; a repeated id is an error (a pairing would be ambiguous)."""
    correct = {}
    for row in read_jsonl(eval_predictions):
        if row["id"] in correct:
            raise ValueError(f"{eval_predictions}: question id {row['id']!r} appears twice")
        correct[row["id"]] = bool(row[key])
    return correct


def compare_iterations(a: IterationDir, b: IterationDir) -> dict[str, PairedTest | None]:
    """A's test answers against B's, per measure; None where either lacks eval.jsonl or that measure
    (majority vote off: majority_k = 0)."""
    tests = {}
    for measure, key in MEASURES.items():
        scored = all(
            it.eval_predictions.exists()
            and it.eval_metrics.exists()
            and read_json(it.eval_metrics).get(f"{measure}_accuracy") is not None
            for it in (a, b)
        )
        tests[measure] = (
            paired_test(correctness(a.eval_predictions, key), correctness(b.eval_predictions, key)) if scored else None
        )
    return tests


def main(argv: list[str]) -> None:
    if len(argv) != 2:
        raise SystemExit("usage: python -m irpo.stats <iter_t dir of A> <iter_t dir of B>")
    for path in map(Path, argv):
        if not (path / "eval.jsonl").exists() or not (path / "eval.json").exists():
            raise SystemExit(f"{path}: no eval.jsonl and eval.json here; give a run's iter_t directory")
    a, b = (IterationDir(Path(p), 0) for p in argv)
    for measure, test in compare_iterations(a, b).items():
        print(
            f"{measure}: "
            + (
                f"A {format_accuracy(test.accuracy_a, None)}, B {format_accuracy(test.accuracy_b, None)}"
                f" on the common questions; A - B: {test.describe()}"
                if test
                else "not scored in both (majority vote needs eval.majority_k > 0)"
            )
        )


if __name__ == "__main__":
    import sys

    main(sys.argv[1:])
