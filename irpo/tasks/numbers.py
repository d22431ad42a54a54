"""Numeric final answers (GSM8K and the arithmetic task): the one number an answer line states.

The reward is exact on purpose: a lenient reader is a reward a model learns to game. An answer line
states a number when, after units and currency are set aside, exactly one number is left: "$1,000.00"
and "18 dollars per day" state 1000 and 18, an equation states the result after its last "="
("40 - 3 = 38" states 38, not 40), a fraction states its value ("40/3" is not 40). Two numbers
("10:30", "2 or 3", "3 hours 20 minutes"), an unevaluated expression ("40 - 3"), a hedge or a
comparison ("about 18", "at least 18", "not 18"), arithmetic in words ("18 squared") and a number in
words state nothing; "1.5 million" is 1500000 and "minus 3" is -3.

Two forms that issue 23 names from models' own answers keep the number they commit to. A clean stated
number followed by a remark, in parentheses, as a new sentence or as a reason ("because", "since"), states
that number when the remark only explains it: no hedge or second thought ("or", "maybe", "wait", "if"), and
each number in it either equals the answer or is arithmetic whose last result is the answer ("18 (9 eggs ×
$2)", "18. She makes $18.", "18 because 9 * 2 = 18"; not "18 (20 with tax)", "18 (she sells 9 eggs)" or
"18 because 9 * 2 = 20"). And the one \\boxed{} of a sentence states what is in the box when the words before
it do not doubt it and those after it only explain it ("from 9 eggs she makes \\boxed{18} dollars"). Either
way only one value can be rewarded, so writing more never adds a chance of reward. A line with a question
mark states nothing ("18?").
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


# Where a remark starts after a stated answer: "18 (...)", "18. She ...", "18; ...", "18 because ...".
_REMARK = re.compile(r"\s+\(|[.;]\s+|,?\s+(?:because|since|as)\b", re.IGNORECASE)
# A remark that doubts, corrects or qualifies the answer rather than explains it.
_SECOND_THOUGHT = re.compile(
    r"\?|\b(?:no|wait|actually|instead|rather|sorry|oops|mistakes?|errors?|typo|re-?check\w*|double-check\w*|"
    r"correct(?:ion|ed)?|recalculat\w*|possibly|likely|unlikely|unsure|sure|guess|think|believe|assum\w*|"
    r"if|unless|also|too|alternatively|otherwise|could|might|may|should|would)\b",
    re.IGNORECASE,
)
# Words that present a result: arithmetic after one must be worked out ("so 9 × 2 = 18", not "so 9 × 3").
_CONCLUSION = re.compile(r"\b(?:so|therefore|thus|hence|total|altogether|answer|result|final)\b", re.IGNORECASE)
_ARITHMETIC_NUMBER = r"\d[\d,]*(?:\.\d+)?(?:\s*[A-Za-z%]+)?"  # "9", "9 eggs", "2.5%"
_OPERATION = r"\s*(?:[-+*/×÷^=]|x(?=\s*\d)|\\times|\\cdot)\s*"
# Arithmetic in a remark: "16 - 3 - 4 = 9 eggs", "9 eggs × 2".
_ARITHMETIC = re.compile(rf"{_ARITHMETIC_NUMBER}(?:{_OPERATION}{_ARITHMETIC_NUMBER})+")


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


def answer_value(answer: str) -> Fraction | None:
    """The value an answer line commits to: its one stated number, the number before a remark that only explains
    it, or the content of its one \\boxed{} (see the module docstring); None if it commits to none."""
    if "?" in answer:  # "18?" asks rather than answers
        return None
    if len(re.findall(r"\\(?:boxed|fbox)\b", answer)) == 1:
        return _boxed_value(answer)
    text = _plain(answer)
    first_digit = re.search(r"\d", text)
    remark = _REMARK.search(text, first_digit.end()) if first_digit else None
    head, rest = (text[: remark.start()], text[remark.end() :]) if remark else (text, "")
    value = stated_number(head)
    if remark is None or value is None or re.search(r"\d[A-Za-z]", head):  # "9Finswer: 8 + 4" is no answer
        return stated_number(text)
    if _only_explains(text[remark.start() :], value):
        return value
    if "=" in head and "=" in rest and _first_value(rest) == value:  # "16 - 7 = 9. 9 * 2 = 18": one chain of
        return stated_number(text)  # equations across a sentence break states its last result
    return None


def _doubts(text: str) -> bool:
    """Whether text hedges, second-guesses or does arithmetic in words."""
    return bool(_HEDGE.search(text) or _SECOND_THOUGHT.search(text) or _WORD_OPERATOR.search(text))


def _only_explains(remark: str, value: Fraction) -> bool:
    """Whether a remark after a stated `value` leaves it the answer: no doubt, and each number in it either `value`
    or in arithmetic, the last result (after "=") being `value`, with no unevaluated arithmetic after "so"."""
    if _doubts(remark):
        return False
    conclusion = _CONCLUSION.search(remark)
    concluded = remark[conclusion.end() :] if conclusion else ""
    if any("=" not in chain for chain in _ARITHMETIC.findall(concluded)):  # "so the total is 9 × 3"
        return False
    if "=" in remark and _first_value(remark.rsplit("=", 1)[1]) != value:
        return False
    loose = _ARITHMETIC.sub(" ", remark)
    if any(stated_number(number.group()) != value for number in _NUMBER.finditer(loose)):
        return False
    return not re.search(r"\d", _NUMBER.sub(" ", loose))  # no digits glued to words: "(x2)"


def _first_value(text: str) -> Fraction | None:
    number = _NUMBER.search(text)
    return stated_number(number.group()) if number else None


def _boxed_value(answer: str) -> Fraction | None:
    """The number in an answer line's one \\boxed{}, when the words before it do not doubt it and those after it
    only explain it (as a remark does)."""
    box = re.search(r"\\(?:boxed|fbox)\s*\{([^{}]*)\}", answer)
    value = stated_number(box.group(1)) if box else None
    if box is None or value is None:  # "\boxed 18", "\boxed{x} = 18": read as a whole
        return stated_number(answer)
    if _doubts(_plain(answer[: box.start()])):
        return None
    return value if _only_explains(_plain(answer[box.end() :]), value) else None


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
        value = answer_value(answer) if answer is not None else None
        return value is not None and value == stated_number(example.gold_answer)

    def canonical(self, answer: str) -> str:
        value = answer_value(answer)
        return format_number(value) if value is not None else answer.strip()
