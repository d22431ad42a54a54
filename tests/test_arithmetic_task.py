import pytest

from irpo.tasks.arithmetic import ArithmeticTask, ArithmeticTaskConfig
from irpo.tasks.base import cut_after_answer_line, extract_after_final_answer


@pytest.fixture(scope="module")
def task():
    return ArithmeticTask(ArithmeticTaskConfig(num_train=50, num_valid=10, num_test=50, num_seed_sft=100))


def test_splits_are_seeded_disjoint_and_gold_is_correct(task):
    splits = task.load_splits()
    again = ArithmeticTask(ArithmeticTaskConfig(num_train=50, num_valid=10, num_test=50, num_seed_sft=100))
    assert [e.question for e in splits.test] == [e.question for e in again.load_splits().test]
    questions = [e.question for e in splits.train + splits.valid + splits.test + task.seed_examples()]
    assert len(questions) == len(set(questions)) == 210
    for e in splits.train + splits.test:
        assert task.prompt(e).startswith("Question: ") and task.prompt(e).endswith("\nSolution:")
        assert task.reward(e, e.gold_solution) == (e.gold_answer, 1.0)


def test_growing_the_train_split_keeps_the_test_split(task):
    bigger = ArithmeticTask(ArithmeticTaskConfig(num_train=80, num_valid=10, num_test=50, num_seed_sft=100))
    assert [e.question for e in bigger.load_splits().test] == [e.question for e in task.load_splits().test]


@pytest.mark.parametrize(
    "completion, answer, correct",
    [
        (" 3 + 4 = 7\nFinal answer: 7", "7", True),
        (" 3 + 4 = 7\nFinal answer: 7.", "7.", True),
        (" Final answer: 5\nmore text\nFinal answer: 7\nQuestion: next", "7", True),  # the last one counts
        (" 3 + 4 = 7\nfinal answer:7", "7", True),
        (" 3 + 4 = 7\nFinal answer: 7.0", "7.0", True),
        (" 3 + 4 = 7\nFinal answer: 8", "8", False),
        (" 3 + 4 = 7\nFinal answer: seven", "seven", False),  # malformed: present but not a number
        (" 3 + 4 = 7\nFinal answer:", None, False),  # empty answer
        (" 3 + 4 = 7", None, False),  # no answer line at all
        ("", None, False),
    ],
)
def test_reward_on_well_formed_malformed_and_answerless_outputs(task, completion, answer, correct):
    example = task.load_splits().test[0]
    example = type(example)(id="x", question="q", gold_answer="7")
    assert task.reward(example, completion) == (answer, float(correct))


def test_majority_vote_groups_equivalent_numbers(task):
    example = task.load_splits().test[0]
    example = type(example)(id="x", question="q", gold_answer="12")
    votes = ["Final answer: 12.0", "Final answer: 5", "Final answer: 12", "no answer", "Final answer: 5"]
    assert task.canonical(task.majority_vote(example, votes)) == "12"  # 12 and 12.0 vs 5 and 5: first wins the tie
    assert task.majority_vote(example, ["nothing", "here"]) is None


def test_response_is_cut_after_the_answer_line():
    assert cut_after_answer_line(" 1 + 1 = 2\nFinal answer: 2\nQuestion: more") == " 1 + 1 = 2\nFinal answer: 2"
    assert cut_after_answer_line("no answer") == "no answer"
    assert extract_after_final_answer("Final answer: (B) because") == "(B) because"


def test_bad_knobs_fail_with_a_clear_message():
    with pytest.raises(ValueError, match="operations"):
        ArithmeticTaskConfig(operations=["pow"])
    with pytest.raises(ValueError, match="cannot make"):
        ArithmeticTask(
            ArithmeticTaskConfig(
                min_reasoning_steps=1,
                max_reasoning_steps=1,
                max_start=1,
                max_operand=1,
                operations=["add"],
                num_test=500,
            )
        ).load_splits()
