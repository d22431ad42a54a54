"""Answer checking decides every reward, so it must have no false positives: a lenient reader is a
reward the model learns to game. Inline strings, false positives first, then the forms that must pass."""

import pytest

from irpo.tasks.arc import ARCTask, ARCTaskConfig
from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig
from irpo.tasks.base import Example, cut_after_answer_line, extract_after_final_answer
from irpo.tasks.gsm8k import GSM8KTask, GSM8KTaskConfig
from irpo.tasks.math import MATHTask, MATHTaskConfig
from irpo.tasks.numbers import format_number, stated_number

GSM8K = GSM8KTask(GSM8KTaskConfig())
ARC = ARCTask(ARCTaskConfig())
MATH = MATHTask(MATHTaskConfig())


def gsm8k_reward(gold: str, completion: str) -> float:
    return GSM8K.reward(Example(id="x", question="q", gold_answer=gold), completion)[1]


# --- the answer line -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "completion, answer",
    [
        ("so 40.\nFinal answer: 40", "40"),
        ("Final answer: 3\nwait, no\nFinal answer: 40", "40"),  # the last one counts
        ("Final answer:\n40", "40"),  # the answer on the next line
        ("Final answer:   \n\n  $40 \nmore", "$40"),
        ("FINAL ANSWER:40", "40"),
        ("Final answer:", None),
        ("Final answer:\n\n", None),
        ("Final answer:\nQuestion: Tom has 40 apples. How many?", None),  # a new question is not an answer
        ("the answer is 40", None),
    ],
)
def test_the_answer_is_read_from_the_last_answer_line_or_the_line_after_an_empty_one(completion, answer):
    assert extract_after_final_answer(completion) == answer


def test_the_response_keeps_an_answer_written_on_the_next_line():
    assert cut_after_answer_line("x\nFinal answer:\n40\nQuestion: next") == "x\nFinal answer:\n40"
    assert cut_after_answer_line("Final answer: 40\nQuestion: next") == "Final answer: 40"
    assert cut_after_answer_line("Final answer:\nQuestion: next") == "Final answer:"


# --- GSM8K: false positives ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "answer_line",
    [
        "40 - 3 = 38",  # an equation whose first operand is the gold answer states its result
        "40 - 3",  # an unevaluated expression
        "40 + 0 = 40 - 1",
        "40/3",  # a fraction is its value
        "40:30",  # a clock time is two numbers
        "40 or 41",
        "40, 41",
        "either 40 or 41",
        "between 40 and 41",
        "40 to 41 apples and 2 pears",
        "40 apples and 3 oranges",
        "at least 40",
        "at most 40",
        "more than 40",
        "about 40",
        "approximately 40",
        "≈ 40",
        "~40",
        "not 40",
        "x = 40, y = 3",
        "x = 3; y = 40 + 1",
        "4,0",  # not a thousands grouping
        "40,00",
        "400",
        "4",
        "40.5",
        "-40",
        "40x2",
        "forty",
        "40 40",
        "40 hours 20 minutes",
        "\\frac{40}{3}",
        "40 + tax",
        "40 * 1",
        "4e1",
        "40 and a half",
        "40 squared",
        "40 plus tax",
        "minus 40",
        "40 thousand",
        "40-ish",
        "40 is wrong",
        "it isn't 40",
        "40 (incorrect)",
        # Arithmetic in words on another number, and numbers glued to what changes them (a review's finds).
        "twice 20",
        "double 40",
        "40 doubled",
        "triple 40",
        "40 tripled",
        "half of 80",
        "a quarter of 160",
        "one fifth of 200",
        "sqrt(1600)",
        "\\sqrt{1600}",
        "√1600",
        "sqrt 1600",
        "square root of 1600",
        "40²",
        "40¹",
        "40₂",
        "39½",
        "40k",
        "40K",
        "40M",
        "4O",
        "40ish",
        "40 ish",
        "over 40",
        "under 40",
        "40 and up",
        "40 max",
        "40 minimum",
        "40 (rounded)",
        "40 to the nearest ten",
        "40 dozen",
        "4 tens",
        "40?",  # asks rather than answers
    ],
)
def test_gsm8k_rejects_anything_but_one_stated_number_equal_to_the_gold(answer_line):
    assert gsm8k_reward("40", f"Some reasoning.\nFinal answer: {answer_line}") == 0.0


@pytest.mark.parametrize(
    "completion",
    [
        "She has 40 left.",  # no answer line: the default reads none
        "Final answer: 40\nOn second thought\nFinal answer: 38",
        "Final answer:\nQuestion: Mia has 40 pens.",
        "Final answer: (40 is wrong) 38",
    ],
)
def test_gsm8k_rejects_the_gold_number_outside_the_stated_answer(completion):
    assert gsm8k_reward("40", completion) == 0.0


# --- GSM8K: the forms of one number that must pass ------------------------------------------------------------


@pytest.mark.parametrize(
    "answer_line",
    [
        "40",
        "40.",
        "40.00",
        "$40",
        "$ 40",
        "40 dollars",
        "$40 per day.",
        "40 apples",
        "40%",
        "40 percent",
        "**40**",
        "*40*",
        "`40`",
        "\\boxed{40}",
        "$\\boxed{40}$",
        "\\text{40 cm}",
        "40 m^2",
        "40 km/h",
        "$40/hour",
        "3 + 37 = 40",
        "5 * 8 = 40 apples",
        "x = 40",
        "Total = $40.00",
        "a = b = 40",
        "40 (forty)",
        "forty (40)",
        "80/2",
        "\\frac{80}{2}",
        "40 times",
        "40 quarters",
        "40kg",
        "40km",
        "40 M",
    ],
)
def test_gsm8k_accepts_one_stated_number_with_units(answer_line):
    assert gsm8k_reward("40", f"Reasoning.\nFinal answer: {answer_line}") == 1.0


# A remark after the stated answer (issue 23's audit): it may explain the answer, never change or doubt it.


@pytest.mark.parametrize(
    "answer_line",
    [
        "40 (8 boxes × 5 apples)",  # a remark in parentheses: arithmetic, unevaluated
        "40 (8 * 5 = 40)",
        "$40 (52 - 12 = $40)",
        "40 apples (the rest, after the gift)",
        "40. She has 40 apples left.",  # a short explanation as a new sentence
        "40. 8 * 5 = 40",
        "40; she sells the rest.",
        "40 because 8 * 5 = 40",  # a reason
        "40, since she gives the rest away",
        "40. So she keeps 52 - 12 = 40 apples.",
        "She keeps 40 (52 - 12 = 40).",
        "8 * 5 = 40 (8 boxes × 5 apples)",
        "60 - 12 = 48. 48 - 8 = 40",  # one chain of equations across a sentence break states its last result
    ],
)
def test_gsm8k_reads_the_number_before_a_remark_that_only_explains_it(answer_line):
    assert gsm8k_reward("40", f"Reasoning.\nFinal answer: {answer_line}") == 1.0


@pytest.mark.parametrize(
    "answer_line",
    [
        "40 (or 41)",  # a hedge or a second thought
        "40 (maybe 41)",
        "40 (approximately)",
        "40 (not sure)",
        "40 (I think)",
        "40 (if she keeps them)",
        "40 (could be 41)",
        "40 (41 is also right)",
        "40 (?)",
        "40. Wait, it is 41.",
        "40. Actually 41.",
        "40. No, 41.",
        "40 (41)",  # two numbers
        "40 (41 apples)",
        "40 (41 with tax)",
        "40. 41.",
        "40; 41",
        "40 (she had 52 apples)",  # a number the explanation does not derive
        "40 (after giving 12 away)",
        "40 (+1)",  # arithmetic on the answer
        "40 (x2)",
        "40 (doubled)",
        "40 (half of 80)",
        "40 (= 41)",  # a result other than the answer
        "40 because 8 * 5 = 41",
        "40 (52 - 12 = 41)",
        "40. So she has 41.",
        "40 (so 41 in total)",
        "40. So the total is 8 × 6",
        "40. The answer is 41.",
        "40 (40 is wrong)",
        "40wer: 40",  # garbled answer lines of a small model: a number glued to letters heads no remark
        "40Finswer: 8 * 5",
        "40(40",
        "40. 40 + 1 = 41",
    ],
)
def test_gsm8k_rejects_a_remark_that_doubts_or_changes_the_answer(answer_line):
    assert gsm8k_reward("40", f"Reasoning.\nFinal answer: {answer_line}") == 0.0


@pytest.mark.parametrize(
    "gold, answer_line",
    [
        ("41", "40 (41 with tax)"),  # the remark's number is never the answer read
        ("41", "40 because 8 * 5 = 41"),  # nor the result of a reason's equation
        ("41", "40. 8 * 5 = 41"),
        ("41", "40 (8 × 5)"),
        ("39", "40 (52 - 13 = 39)"),
        ("12", "40 (after giving 12 away)"),
        ("52", "40. She had 52."),
    ],
)
def test_gsm8k_a_remark_never_supplies_the_rewarded_value(gold, answer_line):
    assert gsm8k_reward(gold, f"Reasoning.\nFinal answer: {answer_line}") == 0.0


# One \boxed{} inside a sentence on the answer line is the answer: the words before it may give context with
# numbers, those after it may only explain it (as a remark).


@pytest.mark.parametrize(
    "answer_line",
    [
        "She keeps \\boxed{40} apples.",
        "She gives 12 of her 52 apples away, so she keeps \\boxed{40}.",
        "Since 52 - 12 = 40, she keeps $\\boxed{40}$ apples.",
        "The answer is \\boxed{40} (52 - 12 = 40).",
        "\\boxed{40} apples (8 boxes × 5)",
        "So she has $\\boxed{40}$ left.",
    ],
)
def test_gsm8k_reads_a_boxed_answer_inside_a_sentence(answer_line):
    assert gsm8k_reward("40", f"Reasoning.\nFinal answer: {answer_line}") == 1.0


@pytest.mark.parametrize(
    "gold, answer_line",
    [
        ("40", "\\boxed{40} or \\boxed{41}"),
        ("40", "\\boxed{40} or 41"),
        ("40", "\\boxed{40} (or 41)"),
        ("40", "maybe \\boxed{40}"),
        ("40", "about \\boxed{40}"),
        ("40", "not \\boxed{40}"),
        ("40", "\\boxed{40}?"),
        ("40", "\\boxed{40} is wrong, 41"),
        ("40", "\\boxed{40}. Wait, 41."),
        ("40", "\\boxed{40}, so she has 41 in total"),
        ("40", "\\boxed{40} = 41"),
        ("40", "\\boxed{40} (41)"),
        ("40", "twice \\boxed{20}"),
        ("40", "\\boxed{about 40}"),
        ("40", "She keeps \\boxed{41} apples."),  # the wrong value
        ("52", "Of her 52 apples she keeps \\boxed{40}."),  # a context number is not the answer
        ("41", "\\boxed{40}, so 41"),
    ],
)
def test_gsm8k_rejects_a_boxed_answer_that_is_doubted_or_changed(gold, answer_line):
    assert gsm8k_reward(gold, f"Reasoning.\nFinal answer: {answer_line}") == 0.0


def test_the_arithmetic_task_reads_remarks_as_gsm8k_does():
    task = ArithmeticTask(ArithmeticTaskConfig())
    example = Example(id="x", question="q", gold_answer="40")
    assert task.reward(example, "52 - 12 = 40\nFinal answer: 40 (52 - 12 = 40)")[1] == 1.0
    assert task.reward(example, "52 - 12 = 40\nFinal answer: 40 (or 41)")[1] == 0.0
    assert task.reward(example, "52 - 12 = 40\nFinal answer: 40 because 52 - 11 = 41")[1] == 0.0


@pytest.mark.parametrize(
    "gold, answer_line",
    [
        ("1,000", "1000"),
        ("1000", "1,000"),
        ("1000", "$1,000.00"),
        ("1234567", "1,234,567"),
        ("-3", "-3"),
        ("-3", "- 3"),
        ("-3", "−3"),
        ("-3", "-$3"),
        ("-3", "minus 3"),
        ("-3", "negative 3"),
        ("3.5", "3.50"),
        ("0.5", ".5"),
        ("0.5", "1/2"),
        ("1500000", "1.5 million"),
        ("40000", "$40 thousand"),
    ],
)
def test_gsm8k_number_formats(gold, answer_line):
    assert gsm8k_reward(gold, f"Final answer: {answer_line}") == 1.0


@pytest.mark.parametrize("gold, answer_line", [("-3", "3"), ("3", "-3"), ("1000", "1,00"), ("1000", "1 000")])
def test_gsm8k_signs_and_groupings_are_not_forgiven(gold, answer_line):
    assert gsm8k_reward(gold, f"Final answer: {answer_line}") == 0.0


def test_gsm8k_answer_on_the_line_after_the_marker():
    assert gsm8k_reward("40", "8 * 5 = 40\nFinal answer:\n40") == 1.0
    assert gsm8k_reward("40", "8 * 5 = 40\nFinal answer:\n\n$40.") == 1.0


def test_gsm8k_majority_vote_groups_values_not_strings():
    example = Example(id="x", question="q", gold_answer="38")
    votes = [
        "Final answer: 40",
        "Final answer: $38.00",
        "Final answer: 40 - 2 = 38",
        "Final answer: 40",
        "Final answer: 38 dollars",
        "no answer",
    ]
    assert GSM8K.canonical(GSM8K.majority_vote(example, votes)) == "38"  # 38 three times, 40 twice


@pytest.mark.parametrize(
    "text, value",
    [("40", "40"), ("3.50", "3.5"), ("1/3", "1/3"), ("-1/4", "-0.25"), ("1,000.000", "1000"), ("2 + 2 = 4.0", "4")],
)
def test_stated_values_have_one_canonical_text(text, value):
    assert format_number(stated_number(text)) == value


# --- ARC: false positives -------------------------------------------------------------------------------------

OPTIONS = [("A", "a plant"), ("B", "photosynthesis"), ("C", "respiration"), ("D", "the mitochondria")]


def arc_answer(answer_line: str):
    example = Example(id="x", question="q", gold_answer="A", meta={"options": OPTIONS})
    return ARC.extract_answer(example, f"Reasoning.\nFinal answer: {answer_line}")


@pytest.mark.parametrize(
    "answer_line",
    [
        "A plant makes its food from light",  # the article, not option A
        "A cell needs energy",
        "A or B",
        "A and B",
        "(A) or (B)",
        "(A), (C)",
        "A/B",
        "A, B",
        "**A** or **B**",
        "(A) and B",
        "(A), not B.",
        "AB",
        "(AB)",
        "(A) respiration",  # the letter of one option with the text of another
        "A: the mitochondria",
        "I think it is A",
        "It's A",
        "(insert letter here)",
        "a plant",
        "",
        "none of the above",
        # A letter taken back or doubted right after it.
        "(A) is wrong",
        "(A) is incorrect",
        "(A) is not the answer",
        "(A) or maybe not",
        "(A) - no wait",
        "(A) (I am not sure)",
        "(A)?",
        "A?",
        "(A), probably",
        "A, I guess",
        "(A) isn't right",
    ],
)
def test_arc_rejects_ambiguous_or_letterless_answers(answer_line):
    assert arc_answer(answer_line) is None


@pytest.mark.parametrize(
    "answer_line",
    [
        "(A)",
        "A",
        "a",
        "(a)",
        "a)",
        "A)",
        "A.",
        "A:",
        "A,",
        "[A]",
        "{A}",
        "**A**",
        "**(A)**",
        "*A*",
        "`A`",
        "\\boxed{A}",
        "$\\boxed{A}$",
        "\\textbf{(A)}",
        "Option A",
        "option (a)",
        "Choice: A",
        "Answer: A",
        "The answer is A.",
        "The correct answer is (A).",
        "The answer is **(A)**",
        "(A) a plant",
        "A. a plant",
        "A: a plant",
        "A - a plant",
        "A (a plant)",
        "(A) because B and C are animals",
        "(A) because the others are not plants",
        "(A). The others do not make food.",
        "(A) since no other fits",
    ],
)
def test_arc_accepts_the_ways_models_write_one_letter(answer_line):
    assert arc_answer(answer_line) == "A"


# A first-person choice, and an explanation naming other options to rule them out (issue 23's audit).


@pytest.mark.parametrize(
    "answer_line",
    [
        "I choose A",
        "I choose (A).",
        "I'd choose A",
        "I would choose (A)",
        "I’ll go with (A)",
        "I will pick option A",
        "I select A",
        "I opt for A",
        "My answer is (A)",
        "My final answer is A.",
        "my choice is A",
        "**I choose (A)**",
        "I choose \\boxed{A}",
        "(A) because (B) and (C) are not plants",
        "(A). Options B, C and D are wrong.",
        "(A); (B), (C) and (D) are incorrect.",
        "(A) since (B) isn't a plant",
        "(A). (C) is not the correct answer.",
        "(A) because (D) is not correct",
        "(A). Neither (B) nor (C) is a plant.",
        "I choose (A) because (B) is not a plant",
    ],
)
def test_arc_accepts_a_first_person_choice_and_an_explanation_that_rules_others_out(answer_line):
    assert arc_answer(answer_line) == "A"


@pytest.mark.parametrize(
    "answer_line",
    [
        "I choose A or B",  # a first-person choice that doubts or names two
        "I choose A and B",
        "I choose A, maybe",
        "I choose A?",
        "I choose not A",
        "I would choose A if it were green",
        "(A) if it is green",  # a condition is a doubt (the old reader took it)
        "(A) unless it is dark",
        "I think I choose A",
        "I'd say A",
        "I guess A",
        "I believe A",
        "I choose (A). (B) is also right.",
        "(A). (B) is also correct.",  # an explanation that endorses or offers another option
        "(A). (B) is correct.",
        "(A). (B) is correct, not (C).",
        "(A) because (B) is right and (C) is not",
        "(A). Not (B), which could also be right",
        "(A). Or (B).",
        "(A). Not (B) but (C).",
        "(A). Not (B); (C).",
        "(A). Not (B), (C).",
        "(A). (B) is not the answer, (C) is.",
        "(A). (B) is, (C) isn't.",
        "(A). (B) is not wrong.",
        "(A). (B) is not incorrect either.",
        "(A) because (B) might be wrong",
        "(A). Actually (B), since (A) is not a process.",
        "(A). The answer is (B), not (C).",
        "(A). (B)?",
        "(A). (B) works too, not (C).",
        "(A). I choose (B) since (C) is not",
        "(A). Wait, (B); (C) is not.",
        "(A). (B) if (C) is not",
        "(A). (B) is a process, (C) is respiration.",  # names others without ruling them out
    ],
)
def test_arc_rejects_a_choice_doubted_or_an_explanation_that_offers_another(answer_line):
    assert arc_answer(answer_line) is None


def test_arc_an_option_whose_text_names_letters():
    options = [("A", "the Sun"), ("B", "the Moon"), ("C", "A and B"), ("D", "neither")]
    example = Example(id="x", question="q", gold_answer="C", meta={"options": options})
    for line in ["(C) A and B", "C. A and B", "C", "Option C: A and B"]:
        assert ARC.reward(example, f"Final answer: {line}") == ("C", 1.0), line
    for line in ["(C) A or B", "(C) A, B and D", "A and B"]:
        assert ARC.extract_answer(example, f"Final answer: {line}") is None, line


def test_arc_letter_outside_the_options_or_before_the_marker_is_wrong():
    example = Example(id="x", question="q", gold_answer="A", meta={"options": OPTIONS})
    assert ARC.reward(example, "Final answer: (E)") == ("E", 0.0)
    assert ARC.reward(example, "(A) looks right") == (None, 0.0)
    assert ARC.reward(example, "Final answer:\n(A)") == ("A", 1.0)
    assert ARC.reward(example, "Final answer: (B)") == ("B", 0.0)


# --- MATH ------------------------------------------------------------------------------------------------------


def math_reward(gold: str, completion: str) -> float:
    return MATH.reward(Example(id="x", question="q", gold_answer=gold), completion)[1]


@pytest.mark.parametrize(
    "completion",
    [
        "Final answer: 5 or 6",
        "Final answer: 5, 6",
        "Final answer: x = 5, y = 6",
        "Final answer: \\boxed{6}",
        "so \\boxed{5}.\nFinal answer: 6",  # the answer line wins over an earlier box
        "Final answer: 55",
        "\\boxed{5",
        "Final answer: not 5",
        "Final answer:",
        "the answer is 5",
        "Final answer: \\boxed{5} or \\boxed{6}",
        "Final answer: \\boxed{6} or \\boxed{5}",
        # A remark after an unboxed answer never supplies it (math-verify reads a line's last value).
        "Final answer: 4 (or 5)",
        "Final answer: 4. 5",
        "Final answer: 4 because 2 + 3 = 5",
        "Final answer: 4 (2 + 3 = 5)",
        "Final answer: $4$ (since 2 + 3 = 5)",
        "Final answer: x = 4, so y = 5",
        "Final answer: 5 (or 6)",  # and one that hedges leaves no answer
        "Final answer: 5 (maybe)",
        "Final answer: 5. Wait, it is 6.",
        "Final answer: 5?",
    ],
)
def test_math_false_positives(completion):
    assert math_reward("5", completion) == 0.0


@pytest.mark.parametrize(
    "completion",
    [
        "Final answer: 5",
        "Final answer: $5$.",
        "Final answer: \\boxed{5}",
        "Final answer:\n\\boxed{5}",
        "Final answer: \\boxed{\\boxed{5}}",
        "Final answer: $\\boxed{5}$ (the count of pairs)",
        "so the answer is $\\boxed{5}$",
        "Final answer: 5.0",
        "Final answer: 5 (the count of pairs)",  # a remark after an unboxed answer
        "Final answer: 5. There are five pairs.",
        "Final answer: 5 because 2 + 3 = 5",
        "Final answer: $5$ (since 2 + 3 = 5)",
    ],
)
def test_math_forms_that_pass(completion):
    assert math_reward("5", completion) == 1.0


def test_math_a_sentence_inside_text_is_part_of_the_answer():
    assert math_reward("34\\text{ sq. units}", "Final answer: 34\\text{ sq. units}") == 1.0
    assert MATH.extract_answer(Example("x", "q", "34"), "Final answer: 34\\text{ sq. units}") == "34\\text{ sq. units}"


def test_math_majority_vote_groups_equivalent_answers():
    example = Example(id="x", question="q", gold_answer="\\frac{1}{2}")
    # As strings, 3 is the most common answer (twice); as values, one half is (three times).
    votes = [
        "Final answer: \\frac12",
        "Final answer: 3",
        "Final answer: 0.5",
        "Final answer: 3",
        "Final answer: \\dfrac{1}{2}",
        "no answer",
    ]
    winner = MATH.majority_vote(example, votes)
    assert winner == "\\frac12" and MATH.is_correct(example, winner)
    # A tie goes to the group seen first.
    assert (
        MATH.majority_vote(example, ["Final answer: 3", "Final answer: 0.5", "Final answer: 1/2", "Final answer: 3.0"])
        == "3"
    )
    assert MATH.majority_vote(example, ["nothing", "here"]) is None
