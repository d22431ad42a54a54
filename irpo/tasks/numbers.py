"""Numeric final answers (GSM8K and the arithmetic task): the one number an answer line states.

The reward is exact on purpose: a lenient reader is a reward a model learns to game. An answer line
states a number when, after units and currency are set aside, exactly one number is left: "$1,000.00"
and "18 dollars per day" state 1000 and 18, an equation states the result after its last "="
("40 - 3 = 38" states 38, not 40), a fraction states its value ("40/3" is not 40). Two numbers
("10:30", "2 or 3", "3 hours 20 minutes"), an unevaluated expression ("40 - 3"), a hedge or a
comparison ("about 18", "at least 18", "not 18"), arithmetic in words ("18 squared") and a number in
words state nothing; "1.5 million" is 1500000 and "minus 3" is -3.
"""

from __future__ import annotations

import re
from decimal import Decimal
from fractions import Fraction

from irpo.tasks.base import Example

_INT = r"(?:\d{1,3}(?:,\d{3})+|\d+)"
# A number: sign, digits (thousands grouped by commas or not), decimals, and an optional "/denominator".
# Not glued to a letter or digit before it ("x2", "1,00"), and no digits may follow it after a comma,
# slash or letters ("1,00", "1/2/3"), so a malformed number never reads as a well-formed one.
_NUMBER = re.compile(rf"(?<![\w.,/])(-?)(?:({_INT})(\.\d+)?|(\.\d+))(?:/({_INT}))?(?![\w,/.]*\d)")
_LATEX_WRAPPER = re.compile(r"\\(?:boxed|text|textbf|mathrm|mathbf|fbox)\s*\{([^{}]*)\}")
_LATEX_FRACTION = re.compile(r"\\[dt]?frac\s*\{([^{}]*)\}\s*\{([^{}]*)\}")
_UNIT_POWER = re.compile(r"(?<=[A-Za-z])\s*(?:\^\s*\{?[23]\}?|[²³])")
_OPERATOR = re.compile(r"[+*×÷^]|/(?!\s*[A-Za-z])|\\(?:times|cdot|div)")  # "/hour" is a unit
# Words and signs that make a number a bound, a guess or a denial rather than the answer.
_HEDGE = re.compile(
    r"[≈~<>≤≥≠±]|\\(?:approx|sim|le|ge|leq|geq|neq|pm)\b|"
    r"\b(?:not|never|about|around|approx\w*|roughly|nearly|almost|maybe|perhaps|probably|"
    r"least|most|than|between|either|or|up to|wrong|incorrect|false|over|under|max|maximum|"
    r"min|minimum|and up|rounded|round|nearest|estimated?|ish)\b|-ish\b|(?<=\d)ish\b|n't\b",
    re.IGNORECASE,
)
# Words that do arithmetic on the number ("18 squared", "18 and a half", "18 plus tax").
# ("18 times" and "18 quarters" are counts, so those words stay.)
_WORD_OPERATOR = re.compile(
    r"\b(?:plus|squared|cubed|divided|multiplied|twice|double[ds]?|triple[ds]?|quadruple[ds]?|"
    r"halved|sqrt|root of|dozens?|tens)\b|\band (?:a|one) (?:half|quarter|third)\b|"
    r"\b(?:half|quarter|third|fourth|fifth|sixth|seventh|eighth|ninth|tenth)s? of\b|√|\\sqrt",
    re.IGNORECASE,
)
# Glued to a number, these change or garble it: "40k" (40000), "40²", "3½", "4O" (a letter O for a zero).
_GLUED = re.compile(r"[²³¹⁰-⁹₀-₉½¼¾⅓⅔⅛]|(?:[kKMBO]|bn)(?![A-Za-z])")
_SCALE = {"hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9, "trillion": 10**12}
# Between two "=" of one line, a separate statement ("x = 5, y = 6") rather than a chain ("a = b = 6").
_STATEMENT_BREAK = re.compile(r",\s|;|\band\b")


def _plain(text: str) -> str:
    """Markdown and LaTeX dress taken off: "**$\\boxed{18}$**" -> "18"."""
    text = text.replace("**", "").replace("__", "").replace("`", "").replace("{,}", ",")
    text = text.strip()
    if len(text) > 2 and text[0] == text[-1] == "*":  # *18* is emphasis; 3*6 stays a product
        text = text[1:-1]
    for _ in range(3):  # nested wrappers: \boxed{\text{18}}
        text = _LATEX_WRAPPER.sub(r"\1", text)
    text = _LATEX_FRACTION.sub(r"\1/\2", text)
    text = text.replace("\\$", "$").replace("\\%", "%").replace("−", "-").replace("\\!", "").replace("\\,", "")
    return re.sub(r"[$€£¥₹]", "", text)


def stated_number(answer: str) -> Fraction | None:
    """The one number `answer` states, exactly (see the module docstring), or None."""
    text = _plain(answer)
    if "=" in text:
        sides = text.split("=")
        if any(_STATEMENT_BREAK.search(side) for side in sides[1:-1]):
            return None
        text = sides[-1]
    if _HEDGE.search(text) or _WORD_OPERATOR.search(text):
        return None
    text = re.sub(r"\b(?:minus|negative)\s+(?=[\d.])", "-", text, flags=re.IGNORECASE)
    text = _UNIT_POWER.sub("", text)  # "18 m^2": the 2 belongs to the unit
    text = re.sub(r"(?<![\w)])-\s+(?=[\d.])", "-", text)  # "- 18" is -18, while "40 - 3" stays two numbers
    numbers = list(_NUMBER.finditer(text))
    if len(numbers) != 1:
        return None
    after = text[numbers[0].end() :]
    if _GLUED.match(after):
        return None
    scale = re.match(r"\s*(hundred|thousand|million|billion|trillion)\b", after, re.IGNORECASE)
    rest = text[: numbers[0].start()] + " " + after
    if re.search(r"\d", rest) or _OPERATOR.search(rest):
        return None
    sign, integer, decimals, bare_decimals, denominator = numbers[0].groups()
    value = Fraction(Decimal((integer or "0").replace(",", "") + (decimals or bare_decimals or "")))
    if denominator is not None:
        if int(denominator.replace(",", "")) == 0:
            return None
        value /= int(denominator.replace(",", ""))
    if scale:  # "1.5 million"
        value *= _SCALE[scale.group(1).lower()]
    return -value if sign else value


def last_number(text: str) -> Fraction | None:
    """The last number anywhere in free text, for the opt-in fallback when there is no answer line."""
    matches = list(_NUMBER.finditer(_plain(text)))
    return stated_number(matches[-1].group()) if matches else None


def format_number(value: Fraction) -> str:
    """Canonical text for a value: "1000", "3.5", "-1/3" (a decimal only where it terminates)."""
    if value.denominator == 1:
        return str(value.numerator)
    denominator = value.denominator
    for prime in (2, 5):
        while denominator % prime == 0:
            denominator //= prime
    if denominator == 1:
        return format((Decimal(value.numerator) / Decimal(value.denominator)).normalize(), "f")
    return f"{value.numerator}/{value.denominator}"


class NumericAnswers:
    """Task methods for answers that are one number (GSM8K, arithmetic): exact match of the stated value."""

    def is_correct(self, example: Example, answer: str | None) -> bool:
        value = stated_number(answer) if answer is not None else None
        return value is not None and value == stated_number(example.gold_answer)

    def canonical(self, answer: str) -> str:
        value = stated_number(answer)
        return format_number(value) if value is not None else answer.strip()
